package explain

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func TestSplitPort(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		port int32
	}{
		"backend":                           {"backend", 0},
		"backend:80":                        {"backend", 80},
		"10.96.0.10:53":                     {"10.96.0.10", 53},
		"n1:30080":                          {"n1", 30080},
		"svc/web:8080":                      {"svc/web", 8080},
		"backend:http":                      {"backend:http", 0},
		"backend:99999":                     {"backend:99999", 0},
		"fd00::1":                           {"fd00::1", 0},
		"web.default.svc.cluster.local:443": {"web.default.svc.cluster.local", 443},
	} {
		host, port := splitPort(in)
		if host != want.host || port != want.port {
			t.Errorf("splitPort(%q) = %q, %d; want %q, %d", in, host, port, want.host, want.port)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"web", "webb", 1}, {"backend", "backnd", 1}, {"db", "web", 2}, {"", "abc", 3}, {"same", "same", 0}} {
		if d := distance(c.a, c.b); d != c.d {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
}

// The text of a broken path names every problem and no verdict line beside them; an
// intact path ends with its verdict.
func TestText(t *testing.T) {
	ok := (&Path{Target: "web", Namespace: "default", Verdict: "OK: fine"}).Text()
	if !strings.HasSuffix(ok, "\nOK: fine\n") || !strings.HasPrefix(ok, "web, as a pod in namespace default sees it\n") {
		t.Errorf("intact path:\n%s", ok)
	}
	broken := (&Path{Target: "x", Namespace: "default", From: "default/c", Problems: []string{"one", "two"}, Verdict: "BROKEN: one"}).Text()
	if strings.Count(broken, "BROKEN: one") != 1 || !strings.Contains(broken, "BROKEN: two") || !strings.Contains(broken, "as pod default/c sees it") {
		t.Errorf("broken path:\n%s", broken)
	}
}

// fakeRunner stands in for nft and iptables-save: no rules at all.
type fakeRunner struct{}

func (fakeRunner) Run(string, string, ...string) (string, error) { return "", nil }

// No target panics the explainer. Its DNS questions go to a server of the test's own on
// loopback, which knows web.default.svc.cluster.local and nothing else.
func FuzzExplain(f *testing.F) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == "web.default.svc.cluster.local." {
			rr, _ := dns.NewRR("web.default.svc.cluster.local. 5 IN A 10.96.0.5")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	f.Cleanup(func() { srv.Shutdown() })
	cs := fake.NewClientset()
	inf := informers.NewSharedInformerFactory(cs, 0)
	e, err := New(Config{Services: inf.Core().V1().Services(), Slices: inf.Discovery().V1().EndpointSlices(), Pods: inf.Core().V1().Pods(),
		Client: cs, Instance: "mc", NodeName: "n1", ClusterDomain: "cluster.local",
		ClusterDNS: netip.MustParseAddr("127.0.0.1"), Runner: fakeRunner{}})
	if err != nil {
		f.Fatal(err)
	}
	_, e.dnsPort, _ = net.SplitHostPort(pc.LocalAddr().String())
	inf.Core().V1().Services().Informer().GetIndexer().Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http"), NodePort: 30080}}}})
	inf.Core().V1().Pods().Informer().GetIndexer().Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-a", Labels: map[string]string{"app": "web"}},
		Status: corev1.PodStatus{PodIP: "10.244.0.2", Phase: corev1.PodRunning}})
	for _, s := range []string{"web", "svc/web:80", "10.96.0.5:80", "10.244.0.2", "n1:30080", "web.default.svc.cluster.local.", ":", "svc/", "a:b:c"} {
		f.Add(s, "default", "")
	}
	f.Add("web", "default", "web-a")
	f.Fuzz(func(t *testing.T, target, ns, from string) {
		e.Explain(context.Background(), Request{Target: target, Namespace: ns, From: from})
	})
}
