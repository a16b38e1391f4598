package apiserver

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
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

// podExec serves pods/exec and pods/attach over WebSocket (v5.channel.k8s.io) or SPDY
// (v4…v1.channel.k8s.io, client-go's SPDY executor), as kube-apiserver and the kubelet
// do.
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
	}
	run := func(ctx context.Context, opts remotecommand.StreamOptions) metav1.Status {
		var code int
		var err error
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
		return st
	}
	switch {
	case websocket.IsWebSocketUpgrade(r):
		execWebSocket(w, r, q, run)
	case httpstream.IsUpgradeRequest(r):
		execSPDY(w, r, q, run)
	default:
		writeError(w, apierrors.NewBadRequest("Upgrade request required"))
	}
}

// The WebSocket remote command protocols the kubelet serves, newest first: v4 and v5
// end with a Status on the error channel (v5 can also close stdin), the older ones
// only a failure's message; base64 ones carry text frames ('0'+channel, then base64).
var wsExecProtocols = []string{execProtocol, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "base64.channel.k8s.io", "channel.k8s.io"}

// execWebSocket serves one exec or attach over WebSocket: frames whose first byte is the
// channel.
func execWebSocket(w http.ResponseWriter, r *http.Request, q url.Values, run func(context.Context, remotecommand.StreamOptions) metav1.Status) {
	up := websocket.Upgrader{Subprotocols: wsExecProtocols, CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	var reader sync.WaitGroup
	defer reader.Wait() // it ends with the connection, closed first
	defer conn.Close()
	proto := cmp.Or(conn.Subprotocol(), "channel.k8s.io")
	b64 := strings.Contains(proto, "base64")
	statusJSON := strings.HasPrefix(proto, "v4.") || strings.HasPrefix(proto, "v5.")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var mu sync.Mutex
	send := func(ch byte, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if b64 {
			return conn.WriteMessage(websocket.TextMessage, append([]byte{'0' + ch}, base64.StdEncoding.EncodeToString(p)...))
		}
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
			if b64 && len(data) > 0 {
				dec, err := base64.StdEncoding.DecodeString(string(data[1:]))
				if err != nil {
					continue
				}
				data = append([]byte{data[0] - '0'}, dec...)
			}
			execFrame(data, stdinSink, resize)
		}
	})
	st := run(ctx, remotecommand.StreamOptions{Tty: isTrue(first(q["tty"])), Stdin: stdin, TerminalSizeQueue: resize,
		Stdout: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStdout, p) }),
		Stderr: writerFunc(func(p []byte) (int, error) { return len(p), send(chanStderr, p) })})
	switch {
	case statusJSON:
		b, _ := json.Marshal(st)
		send(chanStatus, b)
	case st.Status == metav1.StatusFailure:
		send(chanStatus, []byte(st.Message))
	}
	mu.Lock()
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	mu.Unlock()
}

// The SPDY remote command protocols, newest first: v4 reports the result as a Status
// on the error stream, the older ones only a failure's message.
var spdyExecProtocols = []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}

// execSPDY serves one exec or attach over SPDY: the client opens one stream per
// channel (streamType error, stdin, stdout, stderr, resize), as the kubelet expects.
func execSPDY(w http.ResponseWriter, r *http.Request, q url.Values, run func(context.Context, remotecommand.StreamOptions) metav1.Status) {
	protocol, err := httpstream.Handshake(r, w, spdyExecProtocols)
	if err != nil {
		return // Handshake answered
	}
	type replied struct {
		s    httpstream.Stream
		sent <-chan struct{}
	}
	streams := make(chan replied, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, sent <-chan struct{}) error {
		select {
		case streams <- replied{s, sent}:
		default:
			s.Reset() // more streams than a command has
		}
		return nil
	})
	if conn == nil {
		return // the upgrader answered
	}
	defer conn.Close()
	tty := isTrue(first(q["tty"]))
	want := map[string]bool{corev1.StreamTypeError: true, corev1.StreamTypeStdin: isTrue(first(q["stdin"])),
		corev1.StreamTypeStdout: isTrue(first(q["stdout"])), corev1.StreamTypeStderr: isTrue(first(q["stderr"])) && !tty,
		corev1.StreamTypeResize: tty && protocol != "v2.channel.k8s.io" && protocol != "channel.k8s.io"}
	got := map[string]httpstream.Stream{}
	expected := 0
	for _, v := range want {
		if v {
			expected++
		}
	}
	timeout := time.After(30 * time.Second) // the kubelet's stream creation timeout
	for len(got) < expected {
		select {
		case s := <-streams:
			typ := s.s.Headers().Get(corev1.StreamType)
			if !want[typ] || got[typ] != nil {
				s.s.Reset()
				continue
			}
			<-s.sent
			got[typ] = s.s
		case <-timeout:
			return
		case <-conn.CloseChan():
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-conn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	opts := remotecommand.StreamOptions{Tty: tty}
	if s := got[corev1.StreamTypeStdin]; s != nil {
		opts.Stdin = s
	}
	if s := got[corev1.StreamTypeStdout]; s != nil {
		opts.Stdout = s
	}
	if s := got[corev1.StreamTypeStderr]; s != nil {
		opts.Stderr = s
	}
	if s := got[corev1.StreamTypeResize]; s != nil {
		resize := make(sizeQueue, 4)
		opts.TerminalSizeQueue = resize
		go func() {
			defer close(resize)
			dec := json.NewDecoder(s)
			for {
				var sz remotecommand.TerminalSize
				if dec.Decode(&sz) != nil {
					return
				}
				select {
				case resize <- sz:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard // not asked for, or a terminal's (all on stdout)
	}
	st := run(ctx, opts)
	errStream := got[corev1.StreamTypeError]
	switch {
	case protocol == spdyExecProtocols[0]:
		b, _ := json.Marshal(st)
		errStream.Write(b)
	case st.Status != metav1.StatusSuccess:
		errStream.Write([]byte(st.Message))
	}
	for _, s := range got {
		s.Close()
	}
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
