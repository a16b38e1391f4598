package runtime

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/client-go/tools/remotecommand"
)

// A shim serves attaches on a unix socket in its pod's directory, so they reach the
// container's process across daemon restarts, as conmon's attach socket does. Both ways
// it carries frames: a channel byte (the remote command protocol's numbers), a
// big-endian uint32 length, the payload. To the shim: stdin (0), a resize (4, JSON
// {"Width","Height"}) and stdin's end (255); from it: stdout (1) and stderr (2). The shim
// closes the connection when the process has ended and its output is sent.
const (
	frameStdin  = 0
	frameStdout = 1
	frameStderr = 2
	frameResize = 4
	frameClose  = 255
	maxFrame    = 1 << 20
)

func writeFrame(w io.Writer, ch byte, p []byte) error {
	b := make([]byte, 5+len(p))
	b[0] = ch
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	copy(b[5:], p)
	_, err := w.Write(b)
	return err
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// attachSocket is where a container's shim listens: short enough for a socket's path
// limit (108 bytes) whatever the container's name.
func (r *Runtime) attachSocket(uid, container string) string {
	h := fnv.New32a()
	h.Write([]byte(container))
	return filepath.Join(r.podDir(uid), fmt.Sprintf("%08x.sock", h.Sum32()))
}

// shortUnixPath names path so that it fits a socket address (108 bytes): a long one is
// reached through /proc/self/fd and its directory opened; done closes that.
func shortUnixPath(path string) (short string, done func(), err error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// listenAttach binds a shim's attach socket.
func listenAttach(path string) (net.Listener, error) {
	short, done, err := shortUnixPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return net.Listen("unix", short)
}

// Attach connects the streams to a running container's process, as `kubectl attach`
// and `kubectl run -i` ask: its output from now on, and stdin if the container keeps
// one open (spec stdin). It returns when the process ends or ctx does.
func (r *Runtime) Attach(ctx context.Context, pod *corev1.Pod, container string, o remotecommand.StreamOptions) error {
	name, err := podContainer(pod, container)
	if err != nil {
		return err
	}
	c := r.State(string(pod.UID)).Containers[name]
	if c == nil || !c.Alive() {
		return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", name))
	}
	// A shim binds its socket a moment after it starts, and a client may attach the
	// moment the pod runs.
	sock, closeDir, err := shortUnixPath(r.attachSocket(string(pod.UID), name))
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", name, err)
	}
	defer closeDir()
	var d net.Dialer
	var conn net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if conn, err = d.DialContext(ctx, "unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) || !c.Alive() || ctx.Err() != nil {
			return fmt.Errorf("attach to container %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()
	key := pod.Namespace + "/" + pod.Name
	r.log.Info("attached", "pod", key, "container", name, "stdin", o.Stdin != nil, "tty", o.Tty)
	defer r.log.Info("detached", "pod", key, "container", name)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(ch byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, ch, p)
	}
	done := make(chan struct{})
	defer close(done)
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 && send(frameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					send(frameClose, []byte{frameStdin}) // the client closed stdin, or left
					return
				}
			}
		}()
	}
	forwardResizes(o.TerminalSizeQueue, func(sz remotecommand.TerminalSize) {
		b, _ := json.Marshal(sz)
		send(frameResize, b)
	})
	br := bufio.NewReader(conn)
	for {
		ch, p, err := readFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil // the process ended, or the client left
			}
			return err
		}
		switch {
		case ch == frameStdout && o.Stdout != nil:
			o.Stdout.Write(p)
		case ch == frameStderr && o.Stderr != nil:
			o.Stderr.Write(p)
		}
	}
}

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
	resize func(TerminalSize)
	// term is the terminal's master side when the program has one; child is the
	// program's end of its stdin pipe or terminal (nil: neither).
	term, child *os.File
}

// TerminalSize is a window size from a client.
type TerminalSize = remotecommand.TerminalSize

// forwardResizes applies every size q delivers until it delivers nil (the client's
// connection has ended), in a goroutine of its own: the queue's owner ends it.
func forwardResizes(q remotecommand.TerminalSizeQueue, apply func(remotecommand.TerminalSize)) {
	if q == nil {
		return
	}
	go func() {
		for sz := q.Next(); sz != nil; sz = q.Next() {
			apply(*sz)
		}
	}()
}

type frame struct {
	ch byte
	p  []byte
}

// newHub prepares what clients attach to — a pipe for the program's stdin, or a
// terminal — before the first of them can connect: input that came before would be lost.
func newHub(spec *ShimSpec) (*hub, error) {
	h := &hub{clients: map[chan frame]struct{}{}}
	switch {
	case spec.TTY:
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		h.term, h.child = ptmx, tty
		h.resize = func(sz TerminalSize) { pty.Setsize(ptmx, &pty.Winsize{Cols: sz.Width, Rows: sz.Height}) }
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
			ch, p, err := readFrame(r)
			if err != nil {
				return
			}
			h.input(ch, p)
		}
	}()
	for f := range out {
		if writeFrame(conn, f.ch, f.p) != nil {
			leave()
			for range out {
			}
			return
		}
	}
}

func (h *hub) input(ch byte, p []byte) {
	switch ch {
	case frameStdin:
		if h.stdin != nil {
			h.stdin.Write(p)
		}
	case frameClose:
		if h.stdin != nil && h.once {
			h.stdin.Close()
		}
	case frameResize:
		var sz TerminalSize
		if h.resize != nil && json.Unmarshal(p, &sz) == nil {
			h.resize(sz)
		}
	}
}
