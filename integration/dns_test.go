//go:build integration

package integration

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeUpstream serves example.test. A 192.0.2.7 on 127.0.0.77:53 inside the node's netns.
func (n *node) fakeUpstream(t *testing.T) {
	var pc net.PacketConn
	n.inNetns(t, func() {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.77:53"); err != nil {
			t.Error(err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; strings.EqualFold(q.Name, "example.test.") && q.Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR("example.test. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

func TestClusterDNS(t *testing.T) {
	n := newNode(t)
	n.fakeUpstream(t)
	n.start("--dns-upstream", "127.0.0.77")
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	ip := n.clusterIP(t, "backend")
	var pod podStatus
	eventually(t, 30*time.Second, func() error {
		for _, p := range n.podStatuses(t, "app=backend") {
			if p.Ready {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("no backend pod ready")
	})
	podNetns := n.instance + "_default_" + pod.Name
	dig := func(args ...string) (string, error) {
		out, errOut, err := n.exec("ip", append([]string{"netns", "exec", podNetns, "dig", "+short", "+time=2", "+tries=1"}, args...)...)
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, errOut)
		}
		return strings.TrimSpace(out), nil
	}
	// The cluster DNS address routes to the daemon's server once the proxy has the
	// kube-dns endpoint.
	eventually(t, 20*time.Second, func() error {
		if out, err := dig("backend.default.svc.cluster.local"); err != nil || out != ip {
			return fmt.Errorf("dig backend: %q %v, want %s", out, err, ip)
		}
		return nil
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"+tcp", "backend.default.svc.cluster.local"}, ip},
		{[]string{"BACKEND.Default.SVC.cluster.local"}, ip},
		{[]string{"_http._tcp.backend.default.svc.cluster.local", "SRV"}, "0 100 80 backend.default.svc.cluster.local."},
		{[]string{"-x", ip}, "backend.default.svc.cluster.local."},
		{[]string{"dns-version.cluster.local", "TXT"}, `"1.1.0"`},
		{[]string{"example.test"}, "192.0.2.7"}, // forwarded to the fake upstream
		{[]string{"@10.96.0.10", "kube-dns.kube-system.svc.cluster.local"}, "10.96.0.10"},
	} {
		out, err := dig(c.args...)
		if err != nil || out != c.want {
			t.Errorf("dig %v: %q (%v), want %q", c.args, out, err, c.want)
		}
	}
	// busybox nslookup in a pod, through the search path.
	// (busybox asks every search domain and reports those that do not exist, as it
	// does against CoreDNS; the answer is the one line pair that matters.)
	out, _ := n.podShell(pod.IP, "busybox nslookup backend")
	if !strings.Contains(out, "Name:\tbackend.default.svc.cluster.local\nAddress: "+ip+"\n") {
		t.Errorf("nslookup backend in a pod: %q", out)
	}
	// A new service answers at once.
	if _, errOut, err := n.exec("kubectl", "create", "service", "clusterip", "fresh", "--tcp=80:8080"); err != nil {
		t.Fatal(errOut)
	}
	fresh := n.clusterIP(t, "fresh")
	start := time.Now()
	eventually(t, 5*time.Second, func() error {
		if out, err := dig("fresh.default.svc.cluster.local"); err != nil || out != fresh {
			return fmt.Errorf("fresh: %q %v", out, err)
		}
		return nil
	})
	t.Logf("a new service answered %s after its create returned", time.Since(start).Round(time.Millisecond))
}
