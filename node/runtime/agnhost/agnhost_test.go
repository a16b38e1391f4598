package agnhost

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestNetexecEndpoints(t *testing.T) {
	exited := make(chan int, 1)
	srv := httptest.NewServer(NetexecHandler(func(code int) { exited <- code }))
	defer srv.Close()
	host, _ := os.Hostname()
	get := func(path string) string {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("/hostname"); got != host {
		t.Errorf("/hostname = %q, want %q", got, host)
	}
	if got := get("/echo?msg=hello"); got != "hello" {
		t.Errorf("/echo = %q", got)
	}
	if got := get("/clientip"); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("/clientip = %q", got)
	}
	if got := get("/healthz"); got != "ok" {
		t.Errorf("/healthz = %q", got)
	}
	var shell map[string]string
	if err := json.Unmarshal([]byte(get("/shell?cmd=echo%20hi")), &shell); err != nil || shell["output"] != "hi\n" {
		t.Errorf("/shell = %v %v", shell, err)
	}
	if got := get("/"); !strings.HasPrefix(got, "NOW: ") {
		t.Errorf("/ = %q", got)
	}
	get("/exit?code=3")
	if code := <-exited; code != 3 {
		t.Errorf("/exit?code=3 exited with %d", code)
	}
}

func TestUDPReplies(t *testing.T) {
	from := &net.UDPAddr{IP: net.IPv4(10, 244, 0, 9), Port: 5000}
	host, _ := os.Hostname()
	for msg, want := range map[string]string{"hostname": host, "echo hi there\n": "hi there", "clientip": "10.244.0.9:5000"} {
		if got := udpReply(msg, from); got != want {
			t.Errorf("udpReply(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestUnknownSubcommand(t *testing.T) {
	var b strings.Builder
	if code := Main([]string{"nope"}, &b); code != 1 || !strings.Contains(b.String(), "unknown agnhost subcommand") {
		t.Errorf("exit %d, %q", code, b.String())
	}
}

// porter answers on the ports its environment names, over HTTP and HTTPS, plainly or
// as JSON; test-webserver serves files by their path.
func TestPorterAndTestWebserver(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		return port
	}
	plain, secure, web := free(), free(), free()
	t.Setenv("SERVE_PORT_"+plain, "foo")
	t.Setenv("SERVE_TLS_PORT_"+secure, "tls foo")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { porter(ctx, []string{"--json-response"}, io.Discard); done <- struct{}{} }()
	dir := t.TempDir()
	os.WriteFile(dir+"/result", []byte("OK"), 0o644)
	go func() { testWebserver(ctx, []string{"--port", web}, io.Discard); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(url string) (string, error) {
		var last error
		for range 50 { // until the server listens
			resp, err := client.Get(url)
			if err == nil {
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b), nil
			}
			last = err
			time.Sleep(20 * time.Millisecond)
		}
		return "", last
	}
	for url, want := range map[string]string{
		"http://127.0.0.1:" + plain + "/":           `{"Method":"GET","Body":"foo"}` + "\n",
		"https://127.0.0.1:" + secure + "/":         `{"Method":"GET","Body":"tls foo"}` + "\n",
		"http://127.0.0.1:" + web + dir + "/result": "OK",
	} {
		if got, err := get(url); err != nil || got != want {
			t.Errorf("%s: %q (%v), want %q", url, got, err, want)
		}
	}
}
