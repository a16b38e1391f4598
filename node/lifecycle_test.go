package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func hookPod() (*corev1.Pod, *corev1.Container) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", UID: "u1"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}
	return pod, &pod.Spec.Containers[0]
}

func TestHookRequest(t *testing.T) {
	_, ctr := hookPod()
	tests := []struct {
		name   string
		get    corev1.HTTPGetAction
		url    string
		host   string
		header http.Header
	}{
		{"defaults to the pod IP", corev1.HTTPGetAction{Path: "/echo?msg=poststart", Port: intstr.FromInt32(8080)},
			"http://10.244.0.7:8080/echo?msg=poststart", "", http.Header{"User-Agent": {"kube-lifecycle/1.32"}, "Accept": {"*/*"}}},
		{"port by name, https, host", corev1.HTTPGetAction{Path: "/x", Port: intstr.FromString("http"), Host: "10.244.0.9", Scheme: corev1.URISchemeHTTPS},
			"https://10.244.0.9:8080/x", "", http.Header{"User-Agent": {"kube-lifecycle/1.32"}, "Accept": {"*/*"}}},
		{"port number in a string", corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("9090")},
			"http://10.244.0.7:9090/", "", http.Header{"User-Agent": {"kube-lifecycle/1.32"}, "Accept": {"*/*"}}},
		{"headers over the defaults", corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80), HTTPHeaders: []corev1.HTTPHeader{
			{Name: "user-agent", Value: "mine"}, {Name: "Accept", Value: ""}, {Name: "Host", Value: "example.com"}, {Name: "X-A", Value: "1"}, {Name: "X-A", Value: "2"}}},
			"http://10.244.0.7:80/", "example.com", http.Header{"User-Agent": {"mine"}, "Host": {"example.com"}, "X-A": {"1", "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := hookRequest(t.Context(), &tt.get, ctr, "10.244.0.7")
			if err != nil {
				t.Fatal(err)
			}
			if req.URL.String() != tt.url || req.Host != tt.host {
				t.Errorf("got %s (Host %q), want %s (Host %q)", req.URL, req.Host, tt.url, tt.host)
			}
			if diff := cmp.Diff(tt.header, req.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
	for _, port := range []intstr.IntOrString{intstr.FromString("metrics"), intstr.FromInt32(0), intstr.FromInt32(70000)} {
		if _, err := hookRequest(t.Context(), &corev1.HTTPGetAction{Port: port}, ctr, "10.244.0.7"); err == nil {
			t.Errorf("port %s: no error", port.String())
		}
	}
}

// hookServer answers every request with status, and returns its requests' URIs and
// user agents on got.
func hookServer(t *testing.T, status int, tls bool) (port string, got chan string) {
	t.Helper()
	got = make(chan string, 10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI + " " + r.UserAgent()
		w.WriteHeader(status)
	})
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Port(), got
}

func TestHookHTTPGet(t *testing.T) {
	pod, ctr := hookPod()
	tests := []struct {
		name         string
		status       int
		tls          bool
		scheme       corev1.URIScheme
		wantFallback bool
	}{
		{"http", http.StatusOK, false, corev1.URISchemeHTTP, false},
		{"any status is a success", http.StatusInternalServerError, false, corev1.URISchemeHTTP, false},
		{"https, unverified", http.StatusOK, true, corev1.URISchemeHTTPS, false},
		{"https answered in http", http.StatusOK, false, corev1.URISchemeHTTPS, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, got := hookServer(t, tt.status, tt.tls)
			fellBack := false
			k := hook{pod: pod, ctr: ctr, podIP: "127.0.0.1", fallback: func(string) { fellBack = true }}
			h := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/echo?msg=prestop", Port: intstr.Parse(port), Scheme: tt.scheme}}
			if err := k.run(t.Context(), h); err != nil {
				t.Fatal(err)
			}
			if req := <-got; req != "/echo?msg=prestop kube-lifecycle/1.32" {
				t.Errorf("server got %q", req)
			}
			if fellBack != tt.wantFallback {
				t.Errorf("fallback reported: %v, want %v", fellBack, tt.wantFallback)
			}
		})
	}
}

func TestHookHTTPGetRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pod, ctr := hookPod()
	k := hook{pod: pod, ctr: ctr, podIP: "127.0.0.1"}
	err = k.run(t.Context(), &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/hook", Port: intstr.FromInt(port)}})
	want := `HTTP lifecycle hook (/hook) for Container "app" in Pod "web_team(u1)" failed - error: `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want an error starting %q", err, want)
	}
}

func TestHookExecAndSleep(t *testing.T) {
	pod, ctr := hookPod()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		handler corev1.LifecycleHandler
		want    string // the error; "" for none
	}{
		{"exec", t.Context(), corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "exit 0"}}}, ""},
		{"exec fails", t.Context(), corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "exit 3"}}},
			`Exec lifecycle hook ([sh -c exit 3]) for Container "app" in Pod "web_team(u1)" failed - error: command 'sh -c exit 3' exited with 3: oops, message: "oops"`},
		{"sleep", t.Context(), corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 0}}, ""},
		{"sleep cut short", cancelled, corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}},
			`Sleep lifecycle hook (30) for Container "app" in Pod "web_team(u1)" failed - error: container terminated before sleep hook finished`},
		{"tcpSocket is not run", t.Context(), corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}},
			"Cannot run handler: invalid handler: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran []string
			k := hook{pod: pod, ctr: ctr, execIn: func(_ context.Context, cmd []string, out io.Writer) (int, error) {
				ran = cmd
				if strings.HasSuffix(cmd[len(cmd)-1], "exit 3") {
					io.WriteString(out, "oops")
					return 3, nil
				}
				return 0, nil
			}}
			start := time.Now()
			err := k.run(tt.ctx, &tt.handler)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("got %v, want %s", err, tt.want)
			case time.Since(start) > 5*time.Second:
				t.Fatalf("took %s", time.Since(start))
			}
			if e := tt.handler.Exec; e != nil && !cmp.Equal(ran, e.Command) {
				t.Errorf("ran %q, want %q", ran, e.Command)
			}
		})
	}
}

func TestKillGrace(t *testing.T) {
	probe := func(s *int64) *corev1.Probe { return &corev1.Probe{TerminationGracePeriodSeconds: s} }
	tests := []struct {
		name          string
		deletion, pod *int64
		probe         *corev1.Probe
		want          time.Duration
	}{
		{"the deletion's", ptr.To[int64](5), ptr.To[int64](30), probe(ptr.To[int64](1)), 5 * time.Second},
		{"the pod's", nil, ptr.To[int64](30), nil, 30 * time.Second},
		{"the probe's", nil, ptr.To[int64](30), probe(ptr.To[int64](7)), 7 * time.Second},
		{"a probe without its own", nil, ptr.To[int64](30), probe(nil), 30 * time.Second},
		{"none set", nil, nil, nil, minimumGrace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionGracePeriodSeconds: tt.deletion},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tt.pod}}
			if got := killGrace(pod, tt.probe); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestContainerSpec(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}, Containers: []corev1.Container{{Name: "app"}}}}
	for name, want := range map[string]bool{"app": true, "init": true, "debugger": false} {
		if got := containerSpec(pod, name); (got != nil) != want || (got != nil && got.Name != name) {
			t.Errorf("containerSpec(%q) = %v, want found: %v", name, got, want)
		}
	}
}
