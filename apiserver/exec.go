package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodExec runs commands in containers and attaches to their main process; the node
// agent provides it, as a kubelet does.
type PodExec interface {
	Exec(ctx context.Context, pod *corev1.Pod, opts ExecOptions) (int, error)
	// Attach connects the streams to the container's process until it ends or ctx
	// does; Command is unused. Stdin's end is the client closing it (stdinOnce).
	Attach(ctx context.Context, pod *corev1.Pod, opts ExecOptions) error
	// PortForward connects to port inside the pod's network namespace.
	PortForward(ctx context.Context, pod *corev1.Pod, port int32) (net.Conn, error)
}

// ExecOptions are one command's streams. With TTY the command gets a terminal; its
// output all comes on Stdout, and Resize carries the client's window sizes.
type ExecOptions struct {
	Container      string
	Command        []string
	TTY            bool
	Stdin          io.Reader // nil: none
	Stdout, Stderr io.Writer
	Resize         <-chan TerminalSize
}

// TerminalSize is a resize message (channel 4).
type TerminalSize struct{ Width, Height uint16 }

// SetPodExec connects the node agent; until then pods/exec answers 503.
func (s *Server) SetPodExec(p PodExec) { s.handler.exec = p }

// The remote command protocol kubectl speaks: binary WebSocket frames whose first byte
// is the channel.
const (
	execProtocol = "v5.channel.k8s.io"
	chanStdin    = 0
	chanStdout   = 1
	chanStderr   = 2
	chanStatus   = 3
	chanResize   = 4
	chanClose    = 255
)

// podExec serves pods/exec and pods/attach over WebSocket (v5.channel.k8s.io).
func (h *handler) podExec(w http.ResponseWriter, r *http.Request, pod *corev1.Pod, attach bool) {
	q := r.URL.Query()
	cmd := q["command"]
	switch {
	case h.exec == nil:
		writeError(w, apierrors.NewServiceUnavailable("no node agent to run commands"))
		return
	case len(cmd) == 0 && !attach:
		writeError(w, apierrors.NewBadRequest("you must specify at least 1 command"))
		return
	case !websocket.IsWebSocketUpgrade(r):
		writeError(w, apierrors.NewBadRequest("Upgrade request required"))
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{execProtocol}, CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	if conn.Subprotocol() != execProtocol {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError,
			"only "+execProtocol+" is supported"), time.Now().Add(time.Second))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var mu sync.Mutex
	send := func(ch byte, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return conn.WriteMessage(websocket.BinaryMessage, append([]byte{ch}, p...))
	}
	// Read the whole time: stdin, its close, and the client's pings (answered by the
	// library) — a client gone ends the command.
	stdinR, stdinW := io.Pipe()
	var stdin io.Reader
	var stdinSink io.WriteCloser = nopWriteCloser{io.Discard} // stdin frames nobody asked for
	if isTrue(first(q["stdin"])) {
		stdin, stdinSink = stdinR, stdinW
	}
	resize := make(chan TerminalSize, 4)
	go func() {
		defer cancel()
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				stdinW.CloseWithError(io.EOF)
				return
			}
			execFrame(data, stdinSink, resize)
		}
	}()
	opts := ExecOptions{Container: first(q["container"]), Command: cmd, TTY: isTrue(first(q["tty"])),
		Stdin: stdin, Resize: resize,
		Stdout: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStdout, p) }),
		Stderr: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStderr, p) })}
	var code int
	if attach {
		err = h.exec.Attach(ctx, pod, opts)
	} else {
		code, err = h.exec.Exec(ctx, pod, opts)
	}
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess}
	switch {
	case err != nil:
		st.Status, st.Message = metav1.StatusFailure, err.Error()
	case code != 0:
		st.Status, st.Reason = metav1.StatusFailure, "NonZeroExitCode"
		st.Message = fmt.Sprintf("command terminated with non-zero exit code: error executing command [%s], exit code %d", strings.Join(cmd, " "), code)
		st.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: fmt.Sprint(code)}}}
	}
	b, _ := json.Marshal(st)
	send(chanStatus, b)
	mu.Lock()
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	mu.Unlock()
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// execFrame acts on one frame from the client: stdin data, stdin's close, or a resize;
// anything else is ignored.
func execFrame(data []byte, stdin io.WriteCloser, resize chan<- TerminalSize) {
	switch {
	case len(data) == 0:
	case data[0] == chanStdin:
		stdin.Write(data[1:])
	case data[0] == chanClose && len(data) > 1 && data[1] == chanStdin:
		stdin.Close()
	case data[0] == chanResize:
		var sz TerminalSize
		if json.Unmarshal(data[1:], &sz) == nil {
			select {
			case resize <- sz:
			default: // a burst of resizes: the last ones win soon enough
			}
		}
	}
}
