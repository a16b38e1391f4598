package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodExec runs commands in containers; the node agent provides it, as a kubelet does.
type PodExec interface {
	Exec(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

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
	chanClose    = 255
)

// podExec serves pods/exec over WebSocket (v5.channel.k8s.io), without a terminal.
func (h *handler) podExec(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
	q := r.URL.Query()
	cmd := q["command"]
	switch {
	case h.exec == nil:
		writeError(w, apierrors.NewServiceUnavailable("no node agent to run commands"))
		return
	case len(cmd) == 0:
		writeError(w, apierrors.NewBadRequest("you must specify at least 1 command"))
		return
	case isTrue(first(q["tty"])):
		writeError(w, apierrors.NewBadRequest("tty is not supported yet: run without -t"))
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
	go func() {
		defer cancel()
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				stdinW.CloseWithError(io.EOF)
				return
			}
			switch {
			case len(data) == 0:
			case data[0] == chanStdin:
				stdinW.Write(data[1:])
			case data[0] == chanClose && len(data) > 1 && data[1] == chanStdin:
				stdinW.Close()
			}
		}
	}()
	var stdin io.Reader
	if isTrue(first(q["stdin"])) {
		stdin = stdinR
	}
	code, err := h.exec.Exec(ctx, pod, first(q["container"]), cmd, stdin,
		writerFunc(func(p []byte) (int, error) { return len(p), send(chanStdout, p) }),
		writerFunc(func(p []byte) (int, error) { return len(p), send(chanStderr, p) }))
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

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
