package apiserver

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
)

type cannedLogs string

func (c cannedLogs) Logs(_ context.Context, _ *corev1.Pod, _ *corev1.PodLogOptions, w io.Writer, flush func()) error {
	for _, line := range strings.SplitAfter(string(c), "\n") {
		if line != "" {
			w.Write([]byte(line))
			flush()
		}
	}
	return nil
}

// pods/log over a WebSocket, as the e2e suite's "retrieving logs ... over websockets"
// reads it: binary.k8s.io messages, or base64 text.
func TestPodLogWebSocket(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Logs = cannedLogs("container is alive\nsecond\n") })
	if r := s.do(t, "POST", podsPath, jsonCT, `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"main","image":"busybox"}]}}`); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	url := "ws" + strings.TrimPrefix(s.url, "http") + podsPath + "/p/log?container=main"
	for _, proto := range []string{"binary.k8s.io", "base64.binary.k8s.io"} {
		conn, _, err := (&websocket.Dialer{Subprotocols: []string{proto}}).Dial(url, http.Header{})
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		var got strings.Builder
		for {
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					t.Errorf("%s: %v", proto, err)
				}
				break
			}
			if typ == websocket.TextMessage {
				msg, _ = base64.StdEncoding.DecodeString(string(msg))
			}
			got.Write(msg)
		}
		conn.Close()
		if conn.Subprotocol() != proto || got.String() != "container is alive\nsecond\n" {
			t.Errorf("%s: protocol %q, log %q", proto, conn.Subprotocol(), got.String())
		}
	}
}
