package shim

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An attach socket whose path is longer than a socket address holds is still bound by
// the shim and reached by the agent; frames go both ways.
func TestAttachSocketLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "0123abcd.sock")
	ln, err := listenAttach(path)
	if err != nil {
		t.Fatalf("listen on a %d-byte path: %v", len(path), err)
	}
	defer ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket not where it belongs: %v", err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		ch, p, err := ReadFrame(bufio.NewReader(c))
		if err == nil {
			WriteFrame(c, ch+1, append([]byte("echo "), p...))
		}
	}()
	sock, done, err := ShortUnixPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	WriteFrame(c, FrameStdin, []byte("hi"))
	ch, p, err := ReadFrame(bufio.NewReader(c))
	if err != nil || ch != FrameStdout || string(p) != "echo hi" {
		t.Errorf("frame %d %q %v", ch, p, err)
	}
}

// A frame that claims more than the limit is refused, not allocated.
func TestAttachFrameLimit(t *testing.T) {
	_, _, err := ReadFrame(bufio.NewReader(strings.NewReader("\x00\xff\xff\xff\xff")))
	if err == nil || !strings.Contains(err.Error(), "attach frame of") {
		t.Errorf("err %v", err)
	}
}

// FuzzAttachFrames: whatever a client sends the shim's hub, nothing panics.
func FuzzAttachFrames(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x02hi\xff\x00\x00\x00\x00"))
	f.Add([]byte("\x04\x00\x00\x00\x18{\"Width\":80,\"Height\":24}"))
	f.Add([]byte("\x04\x00\x00\x00\x01{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &hub{clients: map[chan frame]struct{}{}, stdin: nopCloser{}, once: true, resize: func(terminalSize) {}}
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			ch, p, err := ReadFrame(r)
			if err != nil {
				return
			}
			h.input(ch, p)
		}
	})
}

type nopCloser struct{}

func (nopCloser) Write(p []byte) (int, error) { return len(p), nil }
func (nopCloser) Close() error                { return nil }
