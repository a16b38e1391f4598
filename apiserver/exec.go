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
	"k8s.io/client-go/tools/remotecommand"
)

// PodExec runs commands in containers and attaches to their main process; the node
// agent's runtime provides it, as a kubelet does.
type PodExec interface {
	// Exec runs command in the container; with streams.Tty on a terminal (its output
	// all on Stdout, resized as the client asks). It returns the command's exit code.
	Exec(ctx context.Context, pod *corev1.Pod, container string, command []string, streams remotecommand.StreamOptions) (int, error)
	// Attach connects the streams to the container's process until it ends or ctx
	// does. Stdin's end is the client closing it (stdinOnce).
	Attach(ctx context.Context, pod *corev1.Pod, container string, streams remotecommand.StreamOptions) error
}

// PodPortForwarder connects to a port inside a pod's network namespace; the node agent
// provides it.
type PodPortForwarder interface {
	PortForward(ctx context.Context, pod *corev1.Pod, port int32) (net.Conn, error)
}

// sizeQueue hands a client's terminal sizes to the runtime; closed when the client's
// connection ends, so the runtime's reader of it ends too.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q
	if !ok {
		return nil
	}
	return &sz
}

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
	var reader sync.WaitGroup
	defer reader.Wait() // it ends with the connection, closed first
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
	resize := make(sizeQueue, 4)
	reader.Go(func() {
		defer cancel()
		defer close(resize)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				stdinW.CloseWithError(io.EOF)
				return
			}
			execFrame(data, stdinSink, resize)
		}
	})
	opts := remotecommand.StreamOptions{Tty: isTrue(first(q["tty"])), Stdin: stdin, TerminalSizeQueue: resize,
		Stdout: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStdout, p) }),
		Stderr: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStderr, p) })}
	var code int
	if attach {
		err = h.exec.Attach(ctx, pod, first(q["container"]), opts)
	} else {
		code, err = h.exec.Exec(ctx, pod, first(q["container"]), cmd, opts)
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
func execFrame(data []byte, stdin io.WriteCloser, resize chan<- remotecommand.TerminalSize) {
	switch {
	case len(data) == 0:
	case data[0] == chanStdin:
		stdin.Write(data[1:])
	case data[0] == chanClose && len(data) > 1 && data[1] == chanStdin:
		stdin.Close()
	case data[0] == chanResize:
		var sz remotecommand.TerminalSize
		if json.Unmarshal(data[1:], &sz) == nil {
			select {
			case resize <- sz:
			default: // a burst of resizes: the last ones win soon enough
			}
		}
	}
}
