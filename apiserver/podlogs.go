package apiserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodLogs reads container logs; the node agent provides it, as a kubelet does for
// kube-apiserver.
type PodLogs interface {
	Logs(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions, w io.Writer, flush func()) error
}

func logOptions(q map[string][]string) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{Container: first(q["container"]), Follow: isTrue(first(q["follow"])),
		Previous: isTrue(first(q["previous"])), Timestamps: isTrue(first(q["timestamps"]))}
	ints := map[string]**int64{"tailLines": &o.TailLines, "sinceSeconds": &o.SinceSeconds, "limitBytes": &o.LimitBytes}
	for name, dst := range ints {
		if v := first(q[name]); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || (name != "tailLines" && n == 0) {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("%s: invalid value %q", name, v))
			}
			*dst = &n
		}
	}
	if v := first(q["sinceTime"]); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("sinceTime: %v", err))
		}
		o.SinceTime = &metav1.Time{Time: t}
	}
	return o, nil
}

// lazyWriter sends the 200 and headers with the first byte, so an error found before
// any output can still be a Status.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "text/plain")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (l *lazyWriter) flush() {
	if f, ok := l.w.(http.Flusher); ok && l.started {
		f.Flush()
	}
}

func (h *handler) podLog(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := logOptions(req.query)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, err := h.api.Get(req.res, req.ns, req.name)
	if err != nil {
		writeError(w, err)
		return
	}
	if h.logs == nil {
		writeError(w, apierrors.NewServiceUnavailable("no node agent serves container logs"))
		return
	}
	if websocket.IsWebSocketUpgrade(r) {
		h.podLogWebSocket(w, r, obj.(*corev1.Pod), opts)
		return
	}
	lw := &lazyWriter{w: w}
	if err := h.logs.Logs(r.Context(), obj.(*corev1.Pod), opts, lw, lw.flush); err != nil && !lw.started {
		writeError(w, err)
		return
	}
	if !lw.started { // an empty log is still a log
		lw.Write(nil)
	}
}

// podLogWebSocket streams a log over a WebSocket, as kube-apiserver serves any stream
// (wsstream): each chunk a message, binary (binary.k8s.io, or no protocol) or base64
// text (base64.binary.k8s.io). An error before the log starts is the closing reason.
func (h *handler) podLogWebSocket(w http.ResponseWriter, r *http.Request, pod *corev1.Pod, opts *corev1.PodLogOptions) {
	up := websocket.Upgrader{Subprotocols: []string{"binary.k8s.io", "base64.binary.k8s.io"}, CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()
	ww := &wsWriter{conn: conn, base64: conn.Subprotocol() == "base64.binary.k8s.io"}
	reason := ""
	if err := h.logs.Logs(r.Context(), pod, opts, ww, func() {}); err != nil && !ww.started {
		reason = err.Error()
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason), time.Now().Add(time.Second))
}

type wsWriter struct {
	conn            *websocket.Conn
	base64, started bool
}

func (w *wsWriter) Write(p []byte) (int, error) {
	w.started = true
	if w.base64 {
		return len(p), w.conn.WriteMessage(websocket.TextMessage, []byte(base64.StdEncoding.EncodeToString(p)))
	}
	return len(p), w.conn.WriteMessage(websocket.BinaryMessage, p)
}
