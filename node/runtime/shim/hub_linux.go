package shim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/creack/pty"
)

// hub is the shim's side: it copies the container's output to every attached client
// and their input to the container's stdin.
type hub struct {
	mu      sync.Mutex
	clients map[chan frame]struct{}
	ended   bool
	// stdin receives the clients' input; nil when the container has none. With once
	// (stdinOnce) the first client to end its stdin ends the container's.
	stdin  io.WriteCloser
	once   bool
	resize func(terminalSize)
	// term is the terminal's master side when the program has one; child is the
	// program's end of its stdin pipe or terminal (nil: neither).
	term, child *os.File
}

// terminalSize is a window size from a client (remote command protocol, channel 4).
type terminalSize struct{ Width, Height uint16 }

type frame struct {
	ch byte
	p  []byte
}

// newHub prepares what clients attach to — a pipe for the program's stdin, or a
// terminal — before the first of them can connect: input that came before would be lost.
func newHub(spec *Spec) (*hub, error) {
	h := &hub{clients: map[chan frame]struct{}{}}
	switch {
	case spec.TTY:
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		h.term, h.child = ptmx, tty
		h.resize = func(sz terminalSize) { pty.Setsize(ptmx, &pty.Winsize{Cols: sz.Width, Rows: sz.Height}) }
		if spec.Stdin {
			h.stdin, h.once = eotCloser{ptmx}, spec.StdinOnce
		}
	case spec.Stdin:
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		h.child, h.stdin, h.once = r, w, spec.StdinOnce
	}
	return h, nil
}

// eotCloser ends a terminal's input as a user would, with ^D: closing the terminal
// would hang it up under the program.
type eotCloser struct{ io.Writer }

func (e eotCloser) Close() error {
	_, err := e.Write([]byte{4})
	return err
}

// broadcast sends output to every client; one that cannot keep up is dropped rather
// than holding up the container.
func (h *hub) broadcast(ch byte, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c <- frame{ch, append([]byte(nil), p...)}:
		default:
			delete(h.clients, c)
			close(c)
		}
	}
}

// end closes every client once the process and its output are done; later
// connections are closed at once.
func (h *hub) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c)
	}
	if h.term != nil {
		h.term.Close()
	}
	if f, ok := h.stdin.(*os.File); ok {
		f.Close()
	}
}

// serve accepts clients until ln is closed.
func (h *hub) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go h.client(conn)
	}
}

func (h *hub) client(conn net.Conn) {
	defer conn.Close()
	out := make(chan frame, 1024)
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	h.clients[out] = struct{}{}
	h.mu.Unlock()
	leave := func() {
		h.mu.Lock()
		if _, ok := h.clients[out]; ok {
			delete(h.clients, out)
			close(out)
		}
		h.mu.Unlock()
	}
	go func() {
		defer leave() // the client is gone
		r := bufio.NewReader(conn)
		for {
			ch, p, err := ReadFrame(r)
			if err != nil {
				return
			}
			h.input(ch, p)
		}
	}()
	for f := range out {
		if WriteFrame(conn, f.ch, f.p) != nil {
			leave()
			for range out {
			}
			return
		}
	}
}

func (h *hub) input(ch byte, p []byte) {
	switch ch {
	case FrameStdin:
		if h.stdin != nil {
			h.stdin.Write(p)
		}
	case FrameClose:
		if h.stdin != nil && h.once {
			h.stdin.Close()
		}
	case FrameResize:
		var sz terminalSize
		if h.resize != nil && json.Unmarshal(p, &sz) == nil {
			h.resize(sz)
		}
	}
}
