package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// fakeSource is a fixed cluster.
type fakeSource struct {
	synced     bool
	namespaces []string
	services   []*corev1.Service
	slices     []*discoveryv1.EndpointSlice
}

func (f *fakeSource) Synced() bool               { return f.synced }
func (f *fakeSource) Namespace(name string) bool { return slices.Contains(f.namespaces, name) }
func (f *fakeSource) Service(ns, name string) *corev1.Service {
	for _, s := range f.services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}
func (f *fakeSource) Slices(ns, service string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range f.slices {
		if s.Namespace == ns && s.Labels[discoveryv1.LabelServiceName] == service {
			out = append(out, s)
		}
	}
	return out
}
func (f *fakeSource) PTR(ip netip.Addr) []string {
	var out []string
	for _, s := range f.services {
		for _, r := range ptrRecords(s, f.Slices(s.Namespace, s.Name)) {
			if r.ip == ip {
				out = append(out, r.name)
			}
		}
	}
	return out
}

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Type: corev1.ServiceTypeClusterIP, Ports: ports}}
}

func epSlice(ns, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, Endpoints: eps, Ports: ports}
}

func epPort(name string, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}
}

// externalName is an ExternalName service of default.
func externalName(name, target string) *corev1.Service {
	s := service("default", name, "")
	s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, target
	return s
}

func ep(ip string, ready bool, hostname string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if hostname != "" {
		e.Hostname = ptr.To(hostname)
	}
	return e
}

func cluster() *fakeSource {
	http := corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}
	db := service("default", "db", corev1.ClusterIPNone, corev1.ServicePort{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP})
	empty := service("default", "nobody", corev1.ClusterIPNone, corev1.ServicePort{Name: "x", Port: 1, Protocol: corev1.ProtocolTCP})
	return &fakeSource{synced: true, namespaces: []string{"default", "kube-system"},
		services: []*corev1.Service{
			service("default", "backend", "10.96.0.20", http, corev1.ServicePort{Port: 9000, Protocol: corev1.ProtocolTCP}),
			service("kube-system", "kube-dns", "10.96.0.10", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
			db, empty,
			externalName("ext", "backend.default.svc.cluster.local"),
			externalName("ext-empty", "nobody.default.svc.cluster.local"),
			externalName("loop-a", "loop-b.default.svc.cluster.local"),
			externalName("loop-b", "loop-a.default.svc.cluster.local"),
			externalName("self", "self.default.svc.cluster.local"),
		},
		slices: []*discoveryv1.EndpointSlice{
			epSlice("default", "backend", []discoveryv1.EndpointPort{epPort("http", 8080), epPort("", 9000)},
				ep("10.244.0.5", true, ""), ep("10.244.0.6", false, "")),
			// The endpoints listen on 15432, the service's port is 5432.
			epSlice("default", "db", []discoveryv1.EndpointPort{epPort("pg", 15432)},
				ep("10.244.0.7", true, "db-0"), ep("10.244.0.8", true, ""), ep("10.244.0.9", false, "db-2")),
			epSlice("kube-system", "kube-dns", []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To(int32(53)), Protocol: ptr.To(corev1.ProtocolUDP)}},
				ep("10.244.0.1", true, "")),
		}}
}

// ask returns the reply as zone-file lines: the rcode, then every record of every
// section (with the section's initial), sorted within a section.
func ask(t *testing.T, src Source, name string, qtype uint16) string {
	t.Helper()
	a := NewAnswerer(Answerer{Zone: "cluster.local", TTL: 5, Serial: 1, Source: src,
		Reverse: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("10.244.0.0/16")}})
	req := new(mdns.Msg)
	req.SetQuestion(name, qtype)
	m := a.Answer(req)
	out := []string{mdns.RcodeToString[m.Rcode]}
	for _, sec := range []struct {
		tag string
		rrs []mdns.RR
	}{{"an", m.Answer}, {"ns", m.Ns}, {"ex", m.Extra}} {
		var lines []string
		for _, rr := range sec.rrs {
			lines = append(lines, sec.tag+" "+strings.Join(strings.Fields(rr.String()), " "))
		}
		slices.Sort(lines)
		out = append(out, lines...)
	}
	return strings.Join(out, "\n")
}

const (
	soa = "ns cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
	// The reverse zones of the pod network (10.244.0.0/16) and of the service network
	// (10.96.0.0/12: cut at its last whole octet).
	podReverseSOA = "ns 244.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
	svcReverseSOA = "ns 10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
)

func TestAnswers(t *testing.T) {
	src := cluster()
	for _, c := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{"dns-version.cluster.local.", mdns.TypeTXT, []string{"NOERROR", `an dns-version.cluster.local. 28800 IN TXT "1.1.0"`}},
		{"backend.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", "an backend.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"BaCkEnD.DEFAULT.svc.Cluster.Local.", mdns.TypeA, []string{"NOERROR", "an BaCkEnD.DEFAULT.svc.Cluster.Local. 5 IN A 10.96.0.20"}},
		{"backend.default.svc.cluster.local.", mdns.TypeAAAA, []string{"NOERROR", soa}},
		{"backend.default.svc.cluster.local.", mdns.TypeTXT, []string{"NOERROR", soa}},
		{"_http._tcp.backend.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an _http._tcp.backend.default.svc.cluster.local. 5 IN SRV 0 100 80 backend.default.svc.cluster.local.",
			"ex backend.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"_http._udp.backend.default.svc.cluster.local.", mdns.TypeSRV, []string{"NXDOMAIN", soa}},
		{"_dns._udp.kube-dns.kube-system.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an _dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
			"ex kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{"20.0.96.10.in-addr.arpa.", mdns.TypePTR, []string{"NOERROR", "an 20.0.96.10.in-addr.arpa. 5 IN PTR backend.default.svc.cluster.local."}},
		{"5.0.244.10.in-addr.arpa.", mdns.TypePTR, []string{"NOERROR", "an 5.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-5.backend.default.svc.cluster.local."}},
		{"7.0.244.10.in-addr.arpa.", mdns.TypePTR, []string{"NOERROR", "an 7.0.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."}},
		{"99.0.244.10.in-addr.arpa.", mdns.TypePTR, []string{"NXDOMAIN", podReverseSOA}},
		{"99.0.96.10.in-addr.arpa.", mdns.TypePTR, []string{"NXDOMAIN", svcReverseSOA}},
		{"5.0.244.10.in-addr.arpa.", mdns.TypeA, []string{"NOERROR", podReverseSOA}},
		{"20.0.96.10.in-addr.arpa.", mdns.TypeTXT, []string{"NOERROR", svcReverseSOA}},
		// Every name a PTR gives resolves.
		{"10-244-0-5.backend.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", "an 10-244-0-5.backend.default.svc.cluster.local. 5 IN A 10.244.0.5"}},
		{"10-244-0-5.backend.default.svc.cluster.local.", mdns.TypeTXT, []string{"NOERROR", soa}},
		{"10-244-0-5.backend.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an 10-244-0-5.backend.default.svc.cluster.local. 5 IN SRV 0 50 8080 10-244-0-5.backend.default.svc.cluster.local.",
			"an 10-244-0-5.backend.default.svc.cluster.local. 5 IN SRV 0 50 9000 10-244-0-5.backend.default.svc.cluster.local.",
			"ex 10-244-0-5.backend.default.svc.cluster.local. 5 IN A 10.244.0.5"}},
		{"10-244-0-6.backend.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}}, // not ready
		{"db.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR",
			"an db.default.svc.cluster.local. 5 IN A 10.244.0.7", "an db.default.svc.cluster.local. 5 IN A 10.244.0.8"}},
		{"nobody.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"db-0.db.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", "an db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.7"}},
		{"10-244-0-8.db.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", "an 10-244-0-8.db.default.svc.cluster.local. 5 IN A 10.244.0.8"}},
		{"db-2.db.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}}, // not ready
		// A headless service's SRV records give the port its endpoints listen on.
		{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 10-244-0-8.db.default.svc.cluster.local.",
			"an _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local.",
			"ex 10-244-0-8.db.default.svc.cluster.local. 5 IN A 10.244.0.8",
			"ex db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.7"}},
		{"_pg._udp.db.default.svc.cluster.local.", mdns.TypeSRV, []string{"NXDOMAIN", soa}},
		{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"_http._tcp.backend.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"_x._tcp.nobody.default.svc.cluster.local.", mdns.TypeSRV, []string{"NXDOMAIN", soa}}, // no endpoints
		// SRV for a service's name: every port.
		{"backend.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an backend.default.svc.cluster.local. 5 IN SRV 0 50 80 backend.default.svc.cluster.local.",
			"an backend.default.svc.cluster.local. 5 IN SRV 0 50 9000 backend.default.svc.cluster.local.",
			"ex backend.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"db.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an db.default.svc.cluster.local. 5 IN SRV 0 50 15432 10-244-0-8.db.default.svc.cluster.local.",
			"an db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local.",
			"ex 10-244-0-8.db.default.svc.cluster.local. 5 IN A 10.244.0.8",
			"ex db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.7"}},
		{"db-0.db.default.svc.cluster.local.", mdns.TypeSRV, []string{"NOERROR",
			"an db-0.db.default.svc.cluster.local. 5 IN SRV 0 100 15432 db-0.db.default.svc.cluster.local.",
			"ex db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.7"}},
		{"nobody.default.svc.cluster.local.", mdns.TypeSRV, []string{"NXDOMAIN", soa}},
		// ExternalName: the CNAME answers every type; the chain's end decides the rcode
		// (RFC 6604), a NODATA end gets the SOA (RFC 2308), a loop is SERVFAIL with each
		// CNAME once.
		{"ext.default.svc.cluster.local.", mdns.TypeAAAA, []string{"NOERROR",
			"an ext.default.svc.cluster.local. 5 IN CNAME backend.default.svc.cluster.local.", soa}},
		{"ext-empty.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN",
			"an ext-empty.default.svc.cluster.local. 5 IN CNAME nobody.default.svc.cluster.local.", soa}},
		{"loop-a.default.svc.cluster.local.", mdns.TypeA, []string{"SERVFAIL",
			"an loop-a.default.svc.cluster.local. 5 IN CNAME loop-b.default.svc.cluster.local.",
			"an loop-b.default.svc.cluster.local. 5 IN CNAME loop-a.default.svc.cluster.local."}},
		{"self.default.svc.cluster.local.", mdns.TypeA, []string{"SERVFAIL",
			"an self.default.svc.cluster.local. 5 IN CNAME self.default.svc.cluster.local."}},
		{"x.backend.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"ext.default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR",
			"an backend.default.svc.cluster.local. 5 IN A 10.96.0.20",
			"an ext.default.svc.cluster.local. 5 IN CNAME backend.default.svc.cluster.local."}},
		{"ext.default.svc.cluster.local.", mdns.TypeCNAME, []string{"NOERROR", "an ext.default.svc.cluster.local. 5 IN CNAME backend.default.svc.cluster.local."}},
		{"x.ext.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"10-244-0-5.default.pod.cluster.local.", mdns.TypeA, []string{"NOERROR", "an 10-244-0-5.default.pod.cluster.local. 5 IN A 10.244.0.5"}},
		{"10-244-0-5.nowhere.pod.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"nothing.default.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"backend.nowhere.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"default.svc.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"nowhere.svc.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"svc.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"pod.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"cluster.local.", mdns.TypeSOA, []string{"NOERROR", "an cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
		{"cluster.local.", mdns.TypeNS, []string{"NOERROR", "an cluster.local. 5 IN NS ns.dns.cluster.local.",
			"ex ns.dns.cluster.local. 5 IN A 10.96.0.10"}},
		{"ns.dns.cluster.local.", mdns.TypeA, []string{"NOERROR", "an ns.dns.cluster.local. 5 IN A 10.96.0.10"}},
		{"ns.dns.cluster.local.", mdns.TypeAAAA, []string{"NOERROR", soa}},
		{"dns.cluster.local.", mdns.TypeA, []string{"NOERROR", soa}},
		{"x.dns.cluster.local.", mdns.TypeA, []string{"NXDOMAIN", soa}},
		{"cluster.local.", mdns.TypeAXFR, []string{"REFUSED"}},
		{"elsewhere.example.", mdns.TypeA, []string{"REFUSED"}}, // no forwarder configured
	} {
		if got, want := ask(t, src, c.name, c.qtype), strings.Join(c.want, "\n"); got != want {
			t.Errorf("%s %s:\n got: %s\nwant: %s", c.name, mdns.TypeToString[c.qtype], strings.ReplaceAll(got, "\n", "\n      "), strings.ReplaceAll(want, "\n", "\n      "))
		}
	}
}

func TestNotSyncedIsServfail(t *testing.T) {
	src := cluster()
	src.synced = false
	if got := ask(t, src, "backend.default.svc.cluster.local.", mdns.TypeA); got != "SERVFAIL" {
		t.Errorf("before the index synced: %s", got)
	}
}

// Other classes than IN are refused for the cluster's names; EDNS comes back with the
// DO bit copied, and an EDNS version other than 0 gets BADVERS.
func TestClassAndEDNS(t *testing.T) {
	a := NewAnswerer(Answerer{Zone: "cluster.local", TTL: 5, Serial: 1, Source: cluster(),
		Reverse: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}})
	for _, c := range []struct {
		class uint16
		name  string
		want  int
	}{
		{mdns.ClassCHAOS, "backend.default.svc.cluster.local.", mdns.RcodeRefused},
		{mdns.ClassHESIOD, "backend.default.svc.cluster.local.", mdns.RcodeRefused},
		{mdns.ClassNONE, "cluster.local.", mdns.RcodeRefused},
		{mdns.ClassCHAOS, "20.0.96.10.in-addr.arpa.", mdns.RcodeRefused},
		{mdns.ClassANY, "backend.default.svc.cluster.local.", mdns.RcodeSuccess},
		{mdns.ClassINET, "backend.default.svc.cluster.local.", mdns.RcodeSuccess},
	} {
		req := new(mdns.Msg)
		req.SetQuestion(c.name, mdns.TypeA)
		req.Question[0].Qclass = c.class
		if m := a.Answer(req); m.Rcode != c.want || c.want != mdns.RcodeSuccess && len(m.Answer) > 0 {
			t.Errorf("%s class %s: %s with %d answers, want %s", c.name, mdns.ClassToString[c.class], mdns.RcodeToString[m.Rcode], len(m.Answer), mdns.RcodeToString[c.want])
		}
	}
	for _, do := range []bool{false, true} {
		req := new(mdns.Msg)
		req.SetQuestion("backend.default.svc.cluster.local.", mdns.TypeA)
		req.SetEdns0(1232, do)
		m := a.Answer(req)
		opt := m.IsEdns0()
		if opt == nil || opt.Do() != do || opt.Version() != 0 || len(m.Answer) != 1 {
			t.Errorf("DO %v: answer's OPT %v, %d answers", do, opt, len(m.Answer))
		}
		if n := strings.Count(m.String(), "OPT PSEUDOSECTION"); n != 1 {
			t.Errorf("DO %v: %d OPT records", do, n)
		}
	}
	req := new(mdns.Msg)
	req.SetQuestion("backend.default.svc.cluster.local.", mdns.TypeA)
	req.SetEdns0(1232, false)
	req.IsEdns0().SetVersion(1)
	m := a.Answer(req)
	// BADVERS (16) is an extended rcode: its high bits travel in the OPT record.
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var back mdns.Msg
	back.Unpack(packed)
	if back.Rcode != mdns.RcodeBadVers || len(back.Answer) != 0 || back.IsEdns0() == nil || back.IsEdns0().Version() != 0 {
		t.Errorf("EDNS version 1: %s", &back)
	}
}

// A malformed query whose header can be read gets FORMERR with its ID; an answer or a
// runt gets nothing.
func TestFormErr(t *testing.T) {
	q := new(mdns.Msg)
	q.SetQuestion("backend.default.svc.cluster.local.", mdns.TypeA)
	q.Id = 4242
	b, _ := q.Pack()
	reply := formErr(b[:len(b)-3]) // the question cut short
	var m mdns.Msg
	if err := m.Unpack(reply); err != nil || m.Id != 4242 || m.Rcode != mdns.RcodeFormatError || !m.Response {
		t.Errorf("FORMERR reply %v (%v)", &m, err)
	}
	if formErr(b[:11]) != nil {
		t.Error("a runt got a reply")
	}
	b[2] |= 0x80 // a response
	if formErr(b) != nil {
		t.Error("a response got a reply")
	}
}

// The answer cache serves a query's bytes back for the same query (any ID) at the same
// generation, keeps the two answerers apart, and forgets everything when the
// generation moves.
func TestAnswerCache(t *testing.T) {
	q := new(mdns.Msg)
	q.SetQuestion("backend.default.svc.cluster.local.", mdns.TypeA)
	q.Id = 1
	b1, _ := q.Pack()
	q.Id = 2
	b2, _ := q.Pack()
	c := newAnswerCache()
	c.get(7, true, b1) // at generation 7
	c.put(7, true, b1, []byte("answer-bytes"), nil)
	if a, ok := c.get(7, true, b2); !ok || string(a.packed) != "answer-bytes" {
		t.Errorf("same query, other ID: %v %q", ok, a.packed)
	}
	if _, ok := c.get(7, false, b2); ok {
		t.Error("the answerer without forwarding got the other's answer")
	}
	q.Question[0].Name = "BACKEND.default.svc.cluster.local."
	b3, _ := q.Pack()
	if _, ok := c.get(7, true, b3); ok {
		t.Error("another spelling got the cached spelling")
	}
	if _, ok := c.get(8, true, b2); ok {
		t.Error("an answer outlived its generation")
	}
	c.put(7, true, b1, []byte("stale"), nil) // computed before the change was seen
	if _, ok := c.get(8, true, b1); ok {
		t.Error("an answer of an older generation was kept")
	}
}
