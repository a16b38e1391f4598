package apiserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// client-go's port-forwarder — what kubectl port-forward runs — through both of the
// transports kubectl uses: SPDY tunnelled in a WebSocket, and plain SPDY.
func TestPortForward(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	s := newTestServer(t, func(c *Config) { c.PortForward = fakeExec{echo: echo.Addr().String()} })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := s.API().Create(context.Background(), s.API().Registry().Lookup("", "pods"), "default", pod, false); err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: s.url}
	u, _ := url.Parse(s.url + "/api/v1/namespaces/default/pods/p/portforward")
	tunnel, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	for name, dialer := range map[string]httpstream.Dialer{"websocket": tunnel, "spdy": plain} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			// (client-go reports the error stream's message through klog, as kubectl shows it.)
			fw, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{"0:8080", "0:1"}, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- fw.ForwardPorts() }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("forward: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("not ready")
			}
			ports, _ := fw.GetPorts()
			// Two connections at once, each its own stream pair.
			for i := range 2 {
				c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(ports[0].Local)))
				if err != nil {
					t.Fatal(err)
				}
				msg := "hello " + strconv.Itoa(i)
				c.Write([]byte(msg))
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Errorf("echo %d: %q %v", i, got, err)
				}
				c.Close()
			}
			// A port nothing listens on: the connection ends.
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(ports[1].Local)))
			if err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
				t.Errorf("port 1: read %d %v", n, err)
			}
			c.Close()
			cancel()
			<-done
		})
	}
}

// pods/proxy and services/proxy carry a request to the pod (for a service, a ready
// endpoint of the named port) and its answer back, without the API's token.
func TestProxySubresources(t *testing.T) {
	var gotAuth, gotPath string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.RequestURI()
		switch r.URL.Path {
		case "/page":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<a href="/rewriteme">in</a><a href="http://elsewhere/x">out</a>`)
		case "/moved":
			http.Redirect(w, r, "/there", http.StatusFound)
		default:
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
		}
	}))
	defer backend.Close()
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	s := newTestServer(t)
	pod := `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"name":"web","containerPort":` + port + `}]}]}}`
	runSteps(t, s, []step{
		{name: "pod", method: "POST", path: podsPath, contentType: jsonCT, body: pod, wantCode: 201},
		{name: "no address yet", method: "GET", path: podsPath + "/p:web/proxy/x", wantCode: 503},
		{name: "pod address", method: "PATCH", path: podsPath + "/p/status", contentType: mergeCT, body: `{"status":{"podIP":"127.0.0.1"}}`, wantCode: 200},
		{name: "pod by port name", method: "GET", path: podsPath + "/p:web/proxy/a/b?q=1", headers: []string{"Authorization", "Bearer secret"}, wantCode: 200,
			check: func(t *testing.T, r response) {
				if string(r.body) != "GET /a/b" || gotPath != "/a/b?q=1" || gotAuth != "" {
					t.Errorf("body %q, backend saw %q with Authorization %q", r.body, gotPath, gotAuth)
				}
			}},
		{name: "pod without a port: its first container port", method: "GET", path: podsPath + "/p/proxy/x", wantCode: 200,
			check: func(t *testing.T, r response) {
				if string(r.body) != "GET /x" {
					t.Errorf("body %q", r.body)
				}
			}},
		{name: "pod by number, POST", method: "POST", path: podsPath + "/p:" + port + "/proxy/", body: "x", wantCode: 200,
			check: func(t *testing.T, r response) {
				if string(r.body) != "POST /" {
					t.Errorf("body %q", r.body)
				}
			}},
		{name: "links in HTML go through the proxy", method: "GET", path: podsPath + "/p:web/proxy/page", wantCode: 200,
			check: func(t *testing.T, r response) {
				want := `<a href="` + podsPath + `/p:web/proxy/rewriteme">in</a><a href="http://elsewhere/x">out</a>`
				if string(r.body) != want {
					t.Errorf("body %s, want %s", r.body, want)
				}
			}},
		{name: "redirects too", method: "GET", path: podsPath + "/p:web/proxy/moved", noRedirect: true, wantCode: 302,
			check: func(t *testing.T, r response) {
				if got := r.header.Get("Location"); got != podsPath+"/p:web/proxy/there" {
					t.Errorf("Location %q", got)
				}
			}},
		{name: "the root without its slash: DELETE goes on", method: "DELETE", path: podsPath + "/p:web/proxy?method=DELETE", wantCode: 200,
			check: func(t *testing.T, r response) {
				if string(r.body) != "DELETE /" || gotPath != "/?method=DELETE" {
					t.Errorf("body %q, backend saw %q", r.body, gotPath)
				}
			}},
		{name: "the root without its slash: GET is redirected", method: "GET", path: podsPath + "/p:web/proxy?q=1", noRedirect: true, wantCode: 301,
			check: func(t *testing.T, r response) {
				if got := r.header.Get("Location"); got != podsPath+"/p:web/proxy/?q=1" {
					t.Errorf("Location %q", got)
				}
			}},
		{name: "unknown port name", method: "GET", path: podsPath + "/p:nope/proxy/", wantCode: 400},
		{name: "bad scheme", method: "GET", path: podsPath + "/ftp:p:web/proxy/", wantCode: 400},
		{name: "service", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"s"},"spec":{"ports":[{"name":"http","port":80,"targetPort":"web"}]}}`},
		{name: "service without endpoints", method: "GET", path: "/api/v1/namespaces/default/services/s:http/proxy/", wantCode: 503,
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.status().Message, `no endpoints available for service "s"`) {
					t.Errorf("message %q", r.status().Message)
				}
			}},
		{name: "endpoints", method: "POST", path: "/api/v1/namespaces/default/endpoints", contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"s"},"subsets":[{"addresses":[{"ip":"127.0.0.1"}],"ports":[{"name":"http","port":` + port + `}]}]}`},
		{name: "service by port number", method: "GET", path: "/api/v1/namespaces/default/services/s:80/proxy/hostname", wantCode: 200,
			check: func(t *testing.T, r response) {
				if string(r.body) != "GET /hostname" {
					t.Errorf("body %q", r.body)
				}
			}},
		{name: "service's only port", method: "GET", path: "/api/v1/namespaces/default/services/s/proxy", wantCode: 200},
		{name: "unknown service port", method: "GET", path: "/api/v1/namespaces/default/services/s:81/proxy/", wantCode: 503},
		{name: "missing service", method: "GET", path: "/api/v1/namespaces/default/services/nope/proxy/", wantCode: 404},
	})
}
