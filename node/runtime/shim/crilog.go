package shim

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
		ch := byte(FrameStdout)
		if w.stream == "stderr" {
			ch = FrameStderr
		}
		w.hub.broadcast(ch, p)
	}
	return len(p), nil
}

// LogRecord is one parsed CRI record.
type LogRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content string
}

// ParseLogRecord parses one line of a log.
func ParseLogRecord(line string) (LogRecord, bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 {
		return LogRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, f[0])
	if err != nil {
		return LogRecord{}, false
	}
	return LogRecord{Time: t, Stream: f[1], Partial: f[2] == "P", Content: f[3]}, true
}

// Render writes a record as the user sees it: the content (with its newline when it was
// a full line), prefixed with the time when asked.
func (r LogRecord) Render(timestamps bool) string {
	var s string
	if timestamps {
		s = r.Time.UTC().Format(time.RFC3339Nano) + " "
	}
	s += r.Content
	if !r.Partial {
		s += "\n"
	}
	return s
}

// ReadLogRecords parses every record of a log file.
func ReadLogRecords(r io.Reader) []LogRecord {
	var out []LogRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		if rec, ok := ParseLogRecord(sc.Text()); ok {
			out = append(out, rec)
		}
	}
	return out
}
