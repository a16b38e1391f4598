//go:build integration

package integration

import (
	"bytes"
	"context"
	binenc "encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeUpstream serves, on 127.0.0.77:53 (UDP and TCP) inside the node's netns,
// example.test. A 192.0.2.7 (other types NODATA) and big.test. with 40 A records — truncated over UDP, as a
// real server would, so the full answer needs TCP. It counts the queries it gets.
func (n *node) fakeUpstream(t *testing.T) *atomic.Int32 {
	var pc net.PacketConn
	var ln net.Listener
	n.inNetns(t, func() {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.77:53"); err == nil {
			ln, err = net.Listen("tcp", "127.0.0.77:53")
		}
		if err != nil {
			t.Error(err)
		}
	})
	if pc == nil || ln == nil {
		t.FailNow()
	}
	queries := &atomic.Int32{}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		switch q := r.Question[0]; {
		case strings.EqualFold(q.Name, "example.test.") && q.Qtype == mdns.TypeA:
			rr, _ := mdns.NewRR("example.test. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		case strings.EqualFold(q.Name, "example.test."): // NODATA, with the zone's SOA
			rr, _ := mdns.NewRR("example.test. 60 IN SOA ns.example.test. hostmaster.example.test. 1 7200 1800 86400 60")
			m.Ns = append(m.Ns, rr)
		case strings.EqualFold(q.Name, "big.test.") && q.Qtype == mdns.TypeA:
			for i := range 40 {
				rr, _ := mdns.NewRR(fmt.Sprintf("big.test. 60 IN A 192.0.2.%d", i+1))
				m.Answer = append(m.Answer, rr)
			}
			if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
				m.Answer, m.Truncated = m.Answer[:1], true
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	udp, tcp := &mdns.Server{PacketConn: pc, Handler: handler}, &mdns.Server{Listener: ln, Handler: handler}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return queries
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
	// Headless: the ready pods, each by its own name too; an ExternalName alias.
	if _, errOut, err := n.cli("apply", "-f", "../manifests/headless.yaml"); err != nil {
		t.Fatal(errOut)
	}
	if _, errOut, err := n.exec("kubectl", "create", "service", "externalname", "alias", "--external-name", "backend.default.svc.cluster.local"); err != nil {
		t.Fatal(errOut)
	}
	var db0, db1 string
	eventually(t, 30*time.Second, func() error {
		for _, p := range n.podStatuses(t, "app=db") {
			if !p.Ready {
				return fmt.Errorf("%s not ready", p.Name)
			}
			*map[string]*string{"db-0": &db0, "db-1": &db1}[p.Name] = p.IP
		}
		if out, err := dig("db.default.svc.cluster.local"); err != nil || len(strings.Fields(out)) != 2 {
			return fmt.Errorf("headless db: %q %v", out, err)
		}
		return nil
	})
	dashed := strings.ReplaceAll(pod.IP, ".", "-")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"db-0.db.default.svc.cluster.local"}, db0},
		{[]string{"+tcp", "db-1.db.default.svc.cluster.local"}, db1},
		// A headless service's SRV records give the port its endpoints listen on (the
		// targetPort, 8080), as CoreDNS: clients connect to the pods themselves.
		{[]string{"_pg._tcp.db.default.svc.cluster.local", "SRV"}, "0 50 8080 db-0.db.default.svc.cluster.local.\n0 50 8080 db-1.db.default.svc.cluster.local."},
		{[]string{"-x", db0}, "db-0.db.default.svc.cluster.local."},
		{[]string{dashed + ".default.pod.cluster.local"}, pod.IP},
		{[]string{"alias.default.svc.cluster.local"}, ip + "\nbackend.default.svc.cluster.local."}, // sorted
		{[]string{"nothing.default.svc.cluster.local"}, ""},
	} {
		out, err := dig(c.args...)
		lines := strings.Split(out, "\n")
		slices.Sort(lines)
		if got := strings.Join(lines, "\n"); err != nil || got != c.want {
			t.Errorf("dig %v: %q (%v), want %q", c.args, got, err, c.want)
		}
	}
	// busybox nslookup in a pod, through the search path.
	// (busybox asks every search domain and reports those that do not exist, as it
	// does against CoreDNS; the answer is the one line pair that matters.)
	out, _ := n.podShell(pod.IP, "busybox nslookup backend")
	if !strings.Contains(out, "Name:\tbackend.default.svc.cluster.local\nAddress: "+ip+"\n") {
		t.Errorf("nslookup backend in a pod: %q", out)
	}
	// A new service answers at once, also where its name was asked before it existed
	// (the NXDOMAIN then is kept by the server's answer cache until the index changes).
	n.inNetns(t, func() {
		m := new(mdns.Msg)
		m.SetQuestion("fresh.default.svc.cluster.local.", mdns.TypeA)
		for range 3 {
			if r, _, err := new(mdns.Client).Exchange(m, "10.96.0.10:53"); err != nil || r.Rcode != mdns.RcodeNameError {
				t.Errorf("fresh before its create: %v %v", r, err)
			}
		}
	})
	fresh, errOut, err := n.exec("kubectl", "create", "service", "clusterip", "fresh", "--tcp=80:8080", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil || fresh == "" {
		t.Fatal(errOut)
	}
	start := time.Now()
	var took time.Duration
	n.inNetns(t, func() {
		m := new(mdns.Msg)
		m.SetQuestion("fresh.default.svc.cluster.local.", mdns.TypeA)
		for time.Since(start) < 5*time.Second {
			if r, _, err := new(mdns.Client).Exchange(m, "10.96.0.10:53"); err == nil && len(r.Answer) == 1 &&
				r.Answer[0].(*mdns.A).A.String() == fresh {
				took = time.Since(start)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	if took == 0 {
		t.Fatal("the new service is not answered")
	}
	t.Logf("a new service is answered %s after kubectl create returned", took.Round(time.Millisecond))
	if took > 100*time.Millisecond {
		t.Errorf("a new service took %s to be answered, want ≤ 100 ms", took)
	}
}

// Answers that do not fit a UDP reply are truncated with TC set and come whole over
// TCP or with a large enough EDNS0 buffer; a truncating upstream is asked again over
// TCP, and its answer is cached.
func TestDNSTransport(t *testing.T) {
	n := newNode(t)
	upstream := n.fakeUpstream(t)
	n.start("--dns-upstream", "127.0.0.77:53")
	c := n.socketClient()
	var eps []string
	for i := range 60 {
		eps = append(eps, fmt.Sprintf("10.244.1.%d", i+1))
	}
	n.post(t, c, "/api/v1/namespaces/default/services", map[string]any{"metadata": map[string]any{"name": "many"},
		"spec": map[string]any{"clusterIP": "None", "ports": []any{map[string]any{"name": "http", "port": 80}}}})
	var endpoints []any
	for _, ip := range eps {
		endpoints = append(endpoints, map[string]any{"addresses": []string{ip}, "conditions": map[string]any{"ready": true}})
	}
	n.post(t, c, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", map[string]any{
		"metadata":    map[string]any{"name": "many-x", "labels": map[string]string{"kubernetes.io/service-name": "many"}},
		"addressType": "IPv4", "endpoints": endpoints, "ports": []any{map[string]any{"name": "http", "port": 80, "protocol": "TCP"}}})
	query := func(network, name string, edns uint16) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		if edns > 0 {
			m.SetEdns0(edns, false)
		}
		var r *mdns.Msg
		var err error
		n.inNetns(t, func() {
			r, _, err = (&mdns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, "10.96.0.10:53")
		})
		return r, err
	}
	eventually(t, 20*time.Second, func() error {
		r, err := query("tcp", "many.default.svc.cluster.local.", 0)
		if err != nil || len(r.Answer) != 60 {
			return fmt.Errorf("over TCP: %v %v", r, err)
		}
		return nil
	})
	if r, err := query("udp", "many.default.svc.cluster.local.", 0); err != nil || !r.Truncated || len(r.Answer) == 60 {
		t.Errorf("over UDP without EDNS0: want TC and part of the answer: %v %v", r, err)
	} else if r.Compress = true; r.Len() > 512 {
		t.Errorf("a UDP answer without EDNS0 of %d bytes (compressed)", r.Len())
	}
	if r, err := query("udp", "many.default.svc.cluster.local.", 4096); err != nil || r.Truncated || len(r.Answer) != 60 {
		t.Errorf("over UDP with a 4096-byte EDNS0 buffer: %v", err)
	}
	r, err := query("udp", "big.test.", 4096)
	if err != nil || len(r.Answer) != 40 {
		t.Fatalf("forwarded big.test (the upstream truncates over UDP): %v %v", r, err)
	}
	asked := upstream.Load()
	if r, err := query("udp", "big.test.", 4096); err != nil || len(r.Answer) != 40 || upstream.Load() != asked {
		t.Errorf("asked again within the TTL: %v answers, upstream queried %d more times", len(r.Answer), upstream.Load()-asked)
	}
	if r, err := query("udp", "nothing.test.", 0); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Errorf("upstream NXDOMAIN passed on: %v %v", r, err)
	}
	// No open resolver: a client outside the pod CIDR and the node gets cluster names
	// but no forwarding (an address of the test's own netns, TEST-NET-2).
	mustRun(t, "ip", "-n", n.netns, "addr", "add", "198.51.100.5/32", "dev", "lo")
	var outside, inside *mdns.Msg
	n.inNetns(t, func() {
		cl := &mdns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("198.51.100.5")}}}
		m := new(mdns.Msg)
		m.SetQuestion("example.test.", mdns.TypeA)
		outside, _, _ = cl.Exchange(m, "10.244.0.1:53")
		m.SetQuestion("many.default.svc.cluster.local.", mdns.TypeA)
		inside, _, _ = cl.Exchange(m, "10.244.0.1:53")
	})
	if outside == nil || outside.Rcode != mdns.RcodeRefused {
		t.Errorf("forwarding for a client outside the cluster: %v, want REFUSED", outside)
	}
	if inside == nil || len(inside.Answer) == 0 {
		t.Errorf("cluster names for a client outside the cluster: %v", inside)
	}
	metrics, errOut, err := n.exec("curl", "-sS", "--unix-socket", n.socket(), "http://localhost/metrics")
	if err != nil {
		t.Fatal(errOut)
	}
	for _, want := range []string{`coredns_dns_responses_total{rcode="NOERROR",type="A"}`, `coredns_dns_responses_total{rcode="REFUSED",type="A"} 1`,
		"coredns_cache_hits_total 1", "coredns_dns_request_duration_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Unless configured: with --dns-forward-for naming its range, the same client is
	// forwarded for.
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.start("--dns-upstream", "127.0.0.77:53", "--dns-forward-for", "198.51.100.0/24")
	n.inNetns(t, func() {
		cl := &mdns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("198.51.100.5")}}}
		m := new(mdns.Msg)
		m.SetQuestion("example.test.", mdns.TypeA)
		outside, _, _ = cl.Exchange(m, "10.244.0.1:53")
	})
	if outside == nil || outside.Rcode != mdns.RcodeSuccess || len(outside.Answer) == 0 {
		t.Errorf("forwarding for a client in --dns-forward-for: %v", outside)
	}
}

// Malformed packets on the real sockets: garbage, truncated headers, responses, huge
// claimed lengths and half-sent TCP messages get no answer and leave the server
// answering — over UDP and TCP, and with the half-open TCP connections still open.
func TestDNSMalformedPackets(t *testing.T) {
	n := newNode(t)
	n.start()
	n.waitDNS(t, "kubernetes.default.svc.cluster.local")
	before := n.goroutines(t)
	valid := new(mdns.Msg)
	valid.SetQuestion("kubernetes.default.svc.cluster.local.", mdns.TypeA)
	wire, _ := valid.Pack()
	response := valid.Copy()
	response.Response = true
	respWire, _ := response.Pack()
	bad := [][]byte{
		{}, {0}, []byte("hello, world"), wire[:5], wire[:len(wire)-3], respWire,
		append(append([]byte{}, wire[:4]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), // counts far beyond the data
		bytes.Repeat([]byte{0xc0, 0x0c}, 2000),                                                // compression pointers to themselves
		make([]byte, 9000),                                                                    // larger than the receive buffer
	}
	udp, err := n.dialInNetns(context.Background(), "udp", "10.96.0.10:53")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, p := range bad {
		udp.Write(p)
	}
	var halfOpen []net.Conn
	for _, p := range bad {
		c, err := n.dialInNetns(context.Background(), "tcp", "10.96.0.10:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(binenc.BigEndian.AppendUint16(nil, uint16(len(p)+100))) // a length it never sends
		c.Write(p)
		halfOpen = append(halfOpen, c)
	}
	// Still answering, over both transports, with those connections open.
	for _, network := range []string{"udp", "tcp"} {
		c, err := n.dialInNetns(context.Background(), network, "10.96.0.10:53")
		if err != nil {
			t.Fatal(err)
		}
		conn := &mdns.Conn{Conn: c}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		conn.WriteMsg(valid)
		r, err := conn.ReadMsg()
		if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s after malformed packets: %v %v", network, r, err)
		}
		c.Close()
	}
	// Whatever the garbage sent over UDP got back is a well-formed response (a header
	// it could read gets FORMERR, as DNS servers answer), and the valid query sent now is
	// answered on the same socket.
	udp.Write(wire)
	udp.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	for {
		k, err := udp.Read(buf)
		if err != nil {
			t.Fatalf("no answer to the valid query on the garbage socket: %v", err)
		}
		var r mdns.Msg
		if err := r.Unpack(buf[:k]); err != nil || !r.Response {
			t.Errorf("a reply that is no DNS response: %v %x", err, buf[:k])
		}
		if r.Id == valid.Id && r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1 {
			break
		}
		if r.Rcode != mdns.RcodeFormatError {
			t.Errorf("garbage answered with %s", mdns.RcodeToString[r.Rcode])
		}
	}
	t.Logf("%d half-open TCP connections held while the server answered; goroutines %d, %d before", len(halfOpen), n.goroutines(t), before)
	// Nothing stays stuck: once the clients are gone (half-open ones are also cut by
	// the server's 5 s read timeout), the daemon is back to its goroutines before.
	for _, c := range halfOpen {
		c.Close()
	}
	udp.Close()
	eventually(t, 15*time.Second, func() error {
		if now := n.goroutines(t); now > before+5 {
			return fmt.Errorf("%d goroutines, %d before the malformed packets", now, before)
		}
		return nil
	})
}

// goroutines is the daemon's goroutine count, from its pprof endpoint.
func (n *node) goroutines(t *testing.T) int {
	t.Helper()
	resp, err := n.socketClient().Get("http://x/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var total int
	if _, err := fmt.Fscanf(resp.Body, "goroutine profile: total %d", &total); err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	return total
}
