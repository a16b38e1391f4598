package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// fakeExec echoes stdin to stdout, writes its command to stderr, and exits with the
// length of the command.
type fakeExec struct{ echo string }

func (fakeExec) Exec(_ context.Context, _ *corev1.Pod, _ string, command []string, o remotecommand.StreamOptions) (int, error) {
	if o.Stdin != nil {
		io.Copy(o.Stdout, o.Stdin)
	}
	io.WriteString(o.Stderr, strings.Join(command, " "))
	return len(command) - 1, nil
}

// PortForward connects to an echo server on loopback, whatever the port.
func (f fakeExec) PortForward(ctx context.Context, _ *corev1.Pod, port int32) (net.Conn, error) {
	if port == 1 {
		return nil, errors.New("nothing listens on port 1")
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", f.echo)
}

// Attach copies stdin to stdout, after a greeting naming the container.
func (fakeExec) Attach(_ context.Context, _ *corev1.Pod, container string, o remotecommand.StreamOptions) error {
	io.WriteString(o.Stdout, "attached to "+container+": ")
	if o.Stdin != nil {
		io.Copy(o.Stdout, o.Stdin)
	}
	return nil
}

// The v5.channel.k8s.io protocol as kubectl speaks it: stdin on channel 0 closed with
// [255, 0], output on 1 and 2, and the exit code in a Status on channel 3.
func TestExecProtocol(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Exec = fakeExec{} })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := s.API().Create(context.Background(), s.API().Registry().Lookup("", "pods"), "default", pod, false); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(s.url, "http://", "ws://", 1) + "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=x&stdin=true&stdout=true&stderr=true"
	d := websocket.Dialer{Subprotocols: []string{"v5.channel.k8s.io"}}
	conn, resp, err := d.Dial(base, nil)
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	defer conn.Close()
	if conn.Subprotocol() != "v5.channel.k8s.io" {
		t.Fatalf("subprotocol %q", conn.Subprotocol())
	}
	conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, "hello"...))
	conn.WriteMessage(websocket.BinaryMessage, []byte{255, 0})
	got := map[byte]string{}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			break
		}
		got[data[0]] += string(data[1:])
	}
	if got[1] != "hello" || got[2] != "sh -c x" {
		t.Errorf("stdout %q, stderr %q", got[1], got[2])
	}
	var st metav1.Status
	if err := json.Unmarshal([]byte(got[3]), &st); err != nil || st.Status != metav1.StatusFailure || st.Reason != "NonZeroExitCode" ||
		st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != "ExitCode" || st.Details.Causes[0].Message != "2" {
		t.Errorf("status %q (%v)", got[3], err)
	}
	// Attach needs no command and ends with Success.
	conn2, _, err := d.Dial(strings.Replace(s.url, "http://", "ws://", 1)+"/api/v1/namespaces/default/pods/p/attach?container=c&stdin=true&stdout=true", nil)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer conn2.Close()
	conn2.WriteMessage(websocket.BinaryMessage, append([]byte{0}, "hi"...))
	conn2.WriteMessage(websocket.BinaryMessage, []byte{255, 0})
	got = map[byte]string{}
	for {
		_, data, err := conn2.ReadMessage()
		if err != nil {
			break
		}
		got[data[0]] += string(data[1:])
	}
	if err := json.Unmarshal([]byte(got[3]), &st); err != nil || got[1] != "attached to c: hi" || st.Status != metav1.StatusSuccess {
		t.Errorf("attach: stdout %q, status %q", got[1], got[3])
	}
	// Without an upgrade, or without a command: a Status, not a hang.
	for _, url := range []string{s.url + "/api/v1/namespaces/default/pods/p/exec?command=sh", s.url + "/api/v1/namespaces/default/pods/p/exec"} {
		r, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d", url, r.StatusCode)
		}
	}
}

// The older WebSocket protocols the e2e suite opens: channel.k8s.io (binary frames, a
// success leaves the error channel empty, a failure writes its message there) and
// base64.channel.k8s.io (text frames: '0'+channel, then base64).
func TestExecOlderWebSocketProtocols(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Exec = fakeExec{} })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := s.API().Create(context.Background(), s.API().Registry().Lookup("", "pods"), "default", pod, false); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(s.url, "http://", "ws://", 1) + "/api/v1/namespaces/default/pods/p/exec?stdout=true&stderr=true"
	for _, c := range []struct {
		proto, command   string
		stderr, errorMsg string
	}{
		{"channel.k8s.io", "&command=echo", "echo", ""}, // exit code 0: nothing on channel 3
		{"channel.k8s.io", "&command=sh&command=-c", "sh -c", "command terminated with non-zero exit code"},
		{"base64.channel.k8s.io", "&command=echo&command=x", "echo x", "command terminated with non-zero exit code"},
	} {
		conn, _, err := (&websocket.Dialer{Subprotocols: []string{c.proto}}).Dial(base+c.command, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.proto, err)
		}
		got := map[byte]string{}
		for {
			typ, data, err := conn.ReadMessage()
			if err != nil {
				break
			}
			if typ == websocket.TextMessage {
				dec, _ := base64.StdEncoding.DecodeString(string(data[1:]))
				data = append([]byte{data[0] - '0'}, dec...)
			}
			got[data[0]] += string(data[1:])
		}
		conn.Close()
		if conn.Subprotocol() != c.proto || got[2] != c.stderr || !strings.HasPrefix(got[3], c.errorMsg) || (c.errorMsg == "") != (got[3] == "") {
			t.Errorf("%s %s: protocol %q, stderr %q, error channel %q", c.proto, c.command, conn.Subprotocol(), got[2], got[3])
		}
	}
}

type sink struct{ closed bool }

func (d *sink) Write(p []byte) (int, error) { return len(p), nil }
func (d *sink) Close() error                { d.closed = true; return nil }

// FuzzExecFrame: no client frame makes the server panic.
func FuzzExecFrame(f *testing.F) {
	for _, seed := range [][]byte{{0, 'h', 'i'}, {255, 0}, append([]byte{4}, `{"Width":80,"Height":24}`...), {4, '{'}, {}, {9}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resize := make(chan remotecommand.TerminalSize, 1)
		execFrame(data, &sink{}, resize)
	})
}

// client-go's SPDY and WebSocket executors, as the e2e framework and kubectl use them:
// stdin in, stdout and stderr apart, the exit code as a CodeExitError.
func TestExecExecutors(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Exec = fakeExec{} })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := s.API().Create(context.Background(), s.API().Registry().Lookup("", "pods"), "default", pod, false); err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: s.url}
	u, _ := url.Parse(s.url + "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=x&stdin=true&stdout=true&stderr=true")
	spdyExec, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		t.Fatal(err)
	}
	for name, ex := range map[string]remotecommand.Executor{"spdy": spdyExec, "websocket": wsExec} {
		var stdout, stderr strings.Builder
		err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("hello"), Stdout: &stdout, Stderr: &stderr})
		var exit utilexec.CodeExitError
		if !errors.As(err, &exit) || exit.Code != 2 || stdout.String() != "hello" || stderr.String() != "sh -c x" {
			t.Errorf("%s: stdout %q, stderr %q, err %v", name, stdout.String(), stderr.String(), err)
		}
	}
	// A command that succeeds: no error.
	u0, _ := url.Parse(s.url + "/api/v1/namespaces/default/pods/p/exec?command=true&stdout=true&stderr=true")
	ex, _ := remotecommand.NewSPDYExecutor(cfg, "POST", u0)
	var out strings.Builder
	if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &out}); err != nil || out.String() != "true" {
		t.Errorf("spdy, exit 0: %q %v", out.String(), err)
	}
}
