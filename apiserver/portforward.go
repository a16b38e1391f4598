package apiserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// The port-forward protocol (portforward.k8s.io): over one SPDY connection the client
// opens, per forwarded connection, an error stream and a data stream carrying the
// same requestID and port headers. kubectl 1.31+ first tries SPDY tunnelled in a
// WebSocket (subprotocol SPDY/3.1+portforward.k8s.io), then plain SPDY; both are served.
const (
	portForwardProtocol = "portforward.k8s.io"
	portForwardTunnel   = "SPDY/3.1+" + portForwardProtocol
)

// podPortForward serves pods/portforward.
func (h *handler) podPortForward(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
	if h.portForward == nil {
		writeError(w, apierrors.NewServiceUnavailable("no node agent to forward ports"))
		return
	}
	streams, closed := make(chan httpstream.Stream, 8), make(chan struct{})
	defer close(closed)
	onStream := func(s httpstream.Stream, _ <-chan struct{}) error {
		select {
		case streams <- s:
		case <-closed:
			s.Reset()
		}
		return nil
	}
	var conn httpstream.Connection
	switch {
	case websocket.IsWebSocketUpgrade(r):
		up := websocket.Upgrader{Subprotocols: []string{portForwardTunnel}, CheckOrigin: func(*http.Request) bool { return true }}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader answered
		}
		if ws.Subprotocol() != portForwardTunnel {
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError,
				"only "+portForwardTunnel+" is supported"), time.Now().Add(time.Second))
			ws.Close()
			return
		}
		if conn, err = spdy.NewServerConnection(&wsNetConn{Conn: ws}, onStream); err != nil {
			ws.Close()
			return
		}
	case httpstream.IsUpgradeRequest(r):
		if _, err := httpstream.Handshake(r, w, []string{portForwardProtocol}); err != nil {
			return // Handshake answered
		}
		if conn = spdy.NewResponseUpgrader().UpgradeResponse(w, r, onStream); conn == nil {
			return // the upgrader answered
		}
	default:
		writeError(w, apierrors.NewBadRequest("Upgrade request required"))
		return
	}
	var forwards sync.WaitGroup
	defer forwards.Wait() // they end with the connection and ctx
	defer conn.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	type pair struct{ data, errs httpstream.Stream }
	pairs := map[string]*pair{}
	for {
		select {
		case <-conn.CloseChan():
			return
		case s := <-streams:
			id := s.Headers().Get("requestID")
			p := pairs[id]
			if p == nil {
				p = &pair{}
				pairs[id] = p
			}
			switch s.Headers().Get("streamType") {
			case "data":
				p.data = s
			case "error":
				p.errs = s
			default:
				s.Reset()
				continue
			}
			if p.data != nil && p.errs != nil {
				delete(pairs, id)
				forwards.Go(func() { h.forward(ctx, pod, p.data, p.errs) })
			}
		}
	}
}

// forward joins one data stream to a new connection to the pod's port; a failure to
// connect is written on the error stream, which kubectl prints.
func (h *handler) forward(ctx context.Context, pod *corev1.Pod, data, errs httpstream.Stream) {
	defer errs.Close()
	defer data.Close()
	port, err := strconv.ParseUint(data.Headers().Get("port"), 10, 16)
	if err != nil || port == 0 {
		fmt.Fprintf(errs, "invalid port %q", data.Headers().Get("port"))
		return
	}
	c, err := h.portForward.PortForward(ctx, pod, int32(port))
	if err != nil {
		fmt.Fprintf(errs, "error forwarding port %d to pod %s: %v", port, pod.Name, err)
		return
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(c, data)
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite() // the client is done sending; the answer may still come
		}
	}()
	go func() {
		io.Copy(data, c)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// wsNetConn carries a byte stream (here SPDY) in a WebSocket's binary messages.
type wsNetConn struct {
	*websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

var _ net.Conn = (*wsNetConn)(nil)
