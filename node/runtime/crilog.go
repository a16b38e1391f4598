package runtime

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
	"time"
)

// Container logs are kept as the CRI logging format: one record per line,
// "<RFC3339Nano time> <stdout|stderr> <F|P> <content>", where P marks a partial line
// (content that did not end in a newline when it was written).

// criWriter turns a stream into CRI records; both streams of a container share one
// underlying file, so writes are serialised.
type criWriter struct {
	mu     *sync.Mutex
	out    io.Writer
	stream string
	now    func() time.Time
	hub    *hub // attached clients also get the output; nil: none
}

func (w *criWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf bytes.Buffer
	ts := w.now().UTC().Format(time.RFC3339Nano)
	for rest := p; len(rest) > 0; {
		line, after, full := bytes.Cut(rest, []byte("\n"))
		tag := "F"
		if !full {
			tag = "P"
		}
		buf.WriteString(ts + " " + w.stream + " " + tag + " ")
		buf.Write(line)
		buf.WriteByte('\n')
		rest = after
	}
	if _, err := w.out.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	if w.hub != nil {
		ch := byte(frameStdout)
		if w.stream == "stderr" {
			ch = frameStderr
		}
		w.hub.broadcast(ch, p)
	}
	return len(p), nil
}

// logRecord is one parsed CRI record.
type logRecord struct {
	time    time.Time
	stream  string
	partial bool
	content string
}

func parseRecord(line string) (logRecord, bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 {
		return logRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, f[0])
	if err != nil {
		return logRecord{}, false
	}
	return logRecord{time: t, stream: f[1], partial: f[2] == "P", content: f[3]}, true
}

// render writes a record as the user sees it: the content (with its newline when it was
// a full line), prefixed with the time when asked.
func (r logRecord) render(timestamps bool) string {
	var s string
	if timestamps {
		s = r.time.UTC().Format(time.RFC3339Nano) + " "
	}
	s += r.content
	if !r.partial {
		s += "\n"
	}
	return s
}

// readRecords parses every record of a log file.
func readRecords(r io.Reader) []logRecord {
	var out []logRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		if rec, ok := parseRecord(sc.Text()); ok {
			out = append(out, rec)
		}
	}
	return out
}
