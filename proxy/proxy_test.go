package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var update = flag.Bool("update", false, "rewrite the golden rulesets in testdata")

type svcOpt func(*corev1.Service)

func svc(name, ip string, port int32, proto corev1.Protocol, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{
		ClusterIP: ip, Type: corev1.ServiceTypeClusterIP,
		Ports: []corev1.ServicePort{{Name: "p", Port: port, Protocol: proto}}}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func nodePort(np int32, local bool) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeNodePort, np
		if local {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
	}
}

func slice(service string, port int32, proto corev1.Protocol, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: service + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("p"), Port: ptr.To(port), Protocol: ptr.To(proto)}},
		Endpoints: eps}
}

// ep is an endpoint on node1 unless node says otherwise.
func ep(ip string, ready, serving, terminating bool, node ...string) discoveryv1.Endpoint {
	n := "node1"
	if len(node) > 0 {
		n = node[0]
	}
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{
		Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

func ready(ip string, node ...string) discoveryv1.Endpoint { return ep(ip, true, true, false, node...) }

const tcp, udp, sctp = corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP

// cluster has a service of every kind the proxy programs.
func cluster() ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	dns := svc("dns", "10.96.0.11", 53, udp)
	dns.Spec.Ports = append(dns.Spec.Ports, corev1.ServicePort{Name: "t", Port: 53, Protocol: tcp})
	dnsTCP := slice("dns", 53, tcp, ready("10.244.0.6"))
	dnsTCP.Name, dnsTCP.Ports[0].Name = "dns-tcp", ptr.To("t")
	return []*corev1.Service{
			svc("web", "10.96.0.10", 80, tcp),
			dns,
			svc("empty", "10.96.0.12", 80, tcp),
			svc("term", "10.96.0.13", 80, tcp),
			svc("local", "10.96.0.14", 80, tcp, func(s *corev1.Service) {
				s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
			}),
			svc("np", "10.96.0.15", 80, tcp, nodePort(30080, true)),
			svc("npc", "10.96.0.16", 80, tcp, nodePort(30081, false)),
			svc("ext", "10.96.0.17", 80, tcp, func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.50"} }),
			svc("aff", "10.96.0.18", 80, tcp, func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
			}),
			svc("sctp", "10.96.0.19", 9999, sctp),
			svc("npempty", "10.96.0.20", 80, tcp, nodePort(30082, false)),
			svc("headless", corev1.ClusterIPNone, 80, tcp),
		}, []*discoveryv1.EndpointSlice{
			slice("web", 8080, tcp, ready("10.244.0.2"), ready("10.244.0.3"), ready("10.244.0.4"), ep("10.244.0.5", false, false, false)),
			slice("dns", 53, udp, ready("10.244.0.6")), dnsTCP,
			slice("term", 80, tcp, ep("10.244.0.7", false, true, true), ep("10.244.0.99", false, false, true)),
			slice("local", 80, tcp, ready("10.244.0.8", "node2")),
			slice("np", 80, tcp, ready("10.244.0.9"), ready("10.244.0.10", "node2")),
			slice("npc", 80, tcp, ready("10.244.0.11")),
			slice("ext", 80, tcp, ready("10.244.0.12")),
			slice("aff", 80, tcp, ready("10.244.0.13"), ready("10.244.0.14")),
			slice("sctp", 9999, sctp, ready("10.244.0.15")),
			slice("headless", 80, tcp, ready("10.244.0.16")),
		}
}

func ports(t *testing.T) []ServicePort {
	services, slices := cluster()
	return Build("node1", services, slices)
}

func TestBuild(t *testing.T) {
	got := map[string]ServicePort{}
	for _, p := range ports(t) {
		got[p.Name+"/"+p.Protocol] = p
	}
	ips := func(eps []Endpoint) string {
		var s []string
		for _, e := range eps {
			s = append(s, e.String())
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct{ key, internal, external string }{
		{"default/web:p/tcp", "10.244.0.2:8080,10.244.0.3:8080,10.244.0.4:8080", "10.244.0.2:8080,10.244.0.3:8080,10.244.0.4:8080"},
		{"default/term:p/tcp", "10.244.0.7:80", "10.244.0.7:80"}, // none ready: serving+terminating
		{"default/empty:p/tcp", "", ""},
		{"default/local:p/tcp", "", "10.244.0.8:80"}, // internal Local: no endpoint on node1
		{"default/np:p/tcp", "10.244.0.10:80,10.244.0.9:80", "10.244.0.9:80"},
		{"default/dns:p/udp", "10.244.0.6:53", "10.244.0.6:53"},
		{"default/dns:t/tcp", "10.244.0.6:53", "10.244.0.6:53"},
	} {
		p, ok := got[c.key]
		if !ok {
			t.Errorf("no port %s", c.key)
			continue
		}
		if ips(p.Internal) != c.internal || ips(p.External) != c.external {
			t.Errorf("%s: internal %s external %s, want %s and %s", c.key, ips(p.Internal), ips(p.External), c.internal, c.external)
		}
	}
	if _, ok := got["default/headless:p/tcp"]; ok {
		t.Error("headless services get no rules")
	}
	if got["default/aff:p/tcp"].Affinity != 60 || got["default/web:p/tcp"].Affinity != 0 {
		t.Error("session affinity timeout not carried")
	}
	if p := got["default/empty:p/tcp"]; p.HasEndpoints {
		t.Error("empty has no endpoints")
	}
	if p := got["default/local:p/tcp"]; !p.HasEndpoints {
		t.Error("local has endpoints, just not here: its traffic is dropped, not rejected")
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./proxy -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the rendered ruleset (go test ./proxy -update rewrites it); got:\n%s", path, got)
	}
}

func TestGoldenRulesets(t *testing.T) {
	golden(t, "nftables.golden", nftScript("mc_proxy", "10.96.0.0/12", nil, buildNFT(ports(t))))
	golden(t, "iptables.golden", iptScript(nil, iptBase("mc", "10.96.0.0/12").merge(buildIPT("mc", ports(t))), nil))
}

// tracedModes renders the cluster in both modes and returns a trace function per mode.
func tracedModes(t *testing.T, affinity func(mode string, sp *ServicePort, e Endpoint) string, clients map[string]string) map[string]func(packet) string {
	ps := ports(t)
	aff := map[string]map[string][]string{ModeNFTables: {}, ModeIPTables: {}}
	for client, epIP := range clients {
		for i := range ps {
			for _, e := range ps[i].Internal {
				if e.IP == epIP {
					for mode := range aff {
						set := affinity(mode, &ps[i], e)
						aff[mode][set] = append(aff[mode][set], client)
					}
				}
			}
		}
	}
	local := []string{"10.244.0.1", "192.168.1.10", "127.0.0.1"}
	nft := parseNFT(t, nftScript("mc_proxy", "10.96.0.0/12", nil, buildNFT(ps)), tracer{t: t, local: local, affinity: aff[ModeNFTables]})
	ipt := parseIPT(t, "mc", iptScript(nil, iptBase("mc", "10.96.0.0/12").merge(buildIPT("mc", ps)), nil), tracer{t: t, local: local, affinity: aff[ModeIPTables]})
	return map[string]func(packet) string{ModeNFTables: nft.trace, ModeIPTables: ipt.trace}
}

func affinitySet(mode string, sp *ServicePort, e Endpoint) string {
	if mode == ModeNFTables {
		return "affinity-" + sp.EndpointID(e)
	}
	return "MC-SEP-" + strings.ToUpper(sp.EndpointID(e))
}

func TestTracePackets(t *testing.T) {
	pod := func(dst, proto string, port int) packet {
		return packet{src: "10.244.0.100", dst: dst, proto: proto, port: port}
	}
	outside := func(dst string, port int) packet {
		return packet{src: "203.0.113.9", dst: dst, proto: "tcp", port: port}
	}
	node := func(dst string, port int) packet {
		return packet{src: "10.244.0.1", dst: dst, proto: "tcp", port: port, output: true}
	}
	web := "dnat 10.244.0.2:8080 | dnat 10.244.0.3:8080 | dnat 10.244.0.4:8080"
	cases := []struct {
		name string
		p    packet
		want string
	}{
		{"ClusterIP picks any ready endpoint", pod("10.96.0.10", "tcp", 80), web},
		{"hairpin is masqueraded", packet{src: "10.244.0.3", dst: "10.96.0.10", proto: "tcp", port: 80},
			"dnat 10.244.0.2:8080 | dnat 10.244.0.3:8080 masq | dnat 10.244.0.4:8080"},
		{"from the node", node("10.96.0.10", 80), web},
		{"undefined port of a ClusterIP", pod("10.96.0.10", "tcp", 81), "reject"},
		{"udp ClusterIP", pod("10.96.0.11", "udp", 53), "dnat 10.244.0.6:53"},
		{"tcp port of the same service", pod("10.96.0.11", "tcp", 53), "dnat 10.244.0.6:53"},
		{"no endpoints", pod("10.96.0.12", "tcp", 80), "reject"},
		{"no endpoints, from the node", node("10.96.0.12", 80), "reject"},
		{"serving and terminating fallback", pod("10.96.0.13", "tcp", 80), "dnat 10.244.0.7:80"},
		{"internalTrafficPolicy Local without local endpoints", pod("10.96.0.14", "tcp", 80), "drop"},
		{"unallocated service address", pod("10.96.5.5", "tcp", 80), "drop"},
		{"NodePort, Local: client kept", outside("192.168.1.10", 30080), "dnat 10.244.0.9:80"},
		{"NodePort from the node", node("192.168.1.10", 30080), "dnat 10.244.0.9:80"},
		{"ClusterIP of a Local NodePort service", pod("10.96.0.15", "tcp", 80), "dnat 10.244.0.10:80 | dnat 10.244.0.9:80"},
		{"NodePort, Cluster: masqueraded", outside("10.244.0.1", 30081), "dnat 10.244.0.11:80 masq"},
		{"NodePort without endpoints", outside("192.168.1.10", 30082), "reject"},
		{"NodePort on localhost is not served", node("127.0.0.1", 30081), "accept"},
		{"externalIP", outside("192.0.2.50", 80), "dnat 10.244.0.12:80 masq"},
		{"externalIP, other port", outside("192.0.2.50", 81), "accept"},
		{"session affinity, new client", pod("10.96.0.18", "tcp", 80), "dnat 10.244.0.13:80 | dnat 10.244.0.14:80"},
		{"session affinity, known client", packet{src: "10.244.0.77", dst: "10.96.0.18", proto: "tcp", port: 80}, "dnat 10.244.0.14:80"},
		{"sctp", pod("10.96.0.19", "sctp", 9999), "dnat 10.244.0.15:9999"},
		{"headless: not ours", pod("10.244.0.16", "tcp", 80), "accept"},
		{"pod to pod", pod("10.244.0.3", "tcp", 8080), "accept"},
	}
	for mode, trace := range tracedModes(t, affinitySet, map[string]string{"10.244.0.77": "10.244.0.14"}) {
		for _, c := range cases {
			if got := trace(c.p); got != c.want {
				t.Errorf("%s: %s: %+v → %s, want %s", mode, c.name, c.p, got, c.want)
			}
		}
	}
}

// byService groups ports into the aggregate, one fragment per service, as the proxy does.
func byService(ports []ServicePort, build func([]ServicePort) *ruleset) *aggregate {
	a := newAggregate()
	groups := map[string][]ServicePort{}
	for _, sp := range ports {
		svc, _, _ := strings.Cut(sp.Name, ":")
		groups[svc] = append(groups[svc], sp)
	}
	for svc, ps := range groups {
		a.set(svc, build(ps), newRuleset(), newRuleset())
	}
	return a
}

// A change costs what it changes: adding one service to many adds elements and no
// chain in nftables mode, and a few rules in iptables mode; the tracer then routes it.
// Removing it again takes exactly that away.
func TestDiffsAreSmall(t *testing.T) {
	newSvc := Build("node1", []*corev1.Service{svc("new", "10.96.0.30", 80, tcp)},
		[]*discoveryv1.EndpointSlice{slice("new", 8080, tcp, ready("10.244.0.40"), ready("10.244.0.41"), ready("10.244.0.42"))})
	const cidr = "10.96.0.0/12"
	want := "dnat 10.244.0.40:8080 | dnat 10.244.0.41:8080 | dnat 10.244.0.42:8080"
	to := packet{src: "10.244.0.100", dst: "10.96.0.30", proto: "tcp", port: 80}

	agg := byService(ports(t), buildNFT)
	full := nftScript("mc_proxy", cidr, nil, agg.full(newRuleset()))
	before, after := newRuleset(), newRuleset()
	agg.set("default/new", buildNFT(newSvc), before, after)
	diff := nftScript("mc_proxy", cidr, before, after)
	if strings.Contains(diff, "chain") || strings.Count(diff, "\n") != 6 { // cluster-ips, 3 endpoint maps, hairpin, service-ips
		t.Errorf("nftables diff for one new service (web already uses pick-3):\n%s", diff)
	}
	if got := parseNFT(t, full+diff, tracer{t: t}).trace(to); got != want {
		t.Errorf("after the diff: %s", got)
	}
	before, after = newRuleset(), newRuleset()
	agg.set("default/new", buildNFT(newSvc), before, after)
	if s := nftScript("mc_proxy", cidr, before, after); s != "" {
		t.Errorf("setting the same service again must render nothing, got:\n%s", s)
	}
	before, after = newRuleset(), newRuleset()
	agg.set("default/new", nil, before, after)
	back := nftScript("mc_proxy", cidr, before, after)
	if strings.Contains(back, "chain") || !strings.Contains(back, "delete element ip mc_proxy service-ips { 10.96.0.30 . tcp . 80 }") {
		t.Errorf("removing the service:\n%s", back)
	}
	if got := parseNFT(t, full+diff+back, tracer{t: t}).trace(to); got != "drop" {
		t.Errorf("after removing the service its address is unallocated, got %s", got)
	}

	build := func(ps []ServicePort) *ruleset { return buildIPT("mc", ps) }
	agg = byService(ports(t), build)
	ipFull := iptScript(nil, agg.full(iptBase("mc", cidr)), nil)
	before, after = newRuleset(), newRuleset()
	agg.set("default/new", build(newSvc), before, after)
	ipDiff := iptScript(before, after, nil)
	if n := strings.Count(ipDiff, "\n-A "); n != 1+3*2+3+1 { // CLUSTER, 3 SEP chains, SVC, CLUSTERIPS
		t.Errorf("iptables diff for one new service has %d rules:\n%s", n, ipDiff)
	}
	if got := parseIPT(t, "mc", ipFull+ipDiff, tracer{t: t}).trace(to); got != want {
		t.Errorf("iptables, after the diff: %s", got)
	}
	before, after = newRuleset(), newRuleset()
	agg.set("default/new", nil, before, after)
	ipBack := iptScript(before, after, nil)
	if got := parseIPT(t, "mc", ipFull+ipDiff+ipBack, tracer{t: t}).trace(to); got != "drop" {
		t.Errorf("iptables, after removing the service its address is unallocated, got %s", got)
	}
	for _, want := range []string{"-D MC-CLUSTER ", "-D MC-CLUSTERIPS -d 10.96.0.30/32", "-X MC-SVC-"} {
		if !strings.Contains(ipBack, want) {
			t.Errorf("removing the service lacks %q:\n%s", want, ipBack)
		}
	}
	if strings.Contains(ipBack, "-A ") {
		t.Errorf("removing a service adds nothing:\n%s", ipBack)
	}
}

func TestStale(t *testing.T) {
	old := []ServicePort{{Name: "default/dns:p", ClusterIP: "10.96.0.10", Protocol: "udp", Port: 53, NodePort: 30053, HasEndpoints: true,
		Internal: []Endpoint{{"10.244.0.2", 53}, {"10.244.0.3", 53}}, External: []Endpoint{{"10.244.0.2", 53}, {"10.244.0.3", 53}}},
		{Name: "default/web:p", ClusterIP: "10.96.0.11", Protocol: "tcp", Port: 80, HasEndpoints: true, Internal: []Endpoint{{"10.244.0.4", 80}}},
		{Name: "default/api:p", ClusterIP: "10.96.0.12", ExternalIPs: []string{"192.0.2.1"}, Protocol: "tcp", Port: 443}}
	next := []ServicePort{{Name: "default/dns:p", ClusterIP: "10.96.0.10", Protocol: "udp", Port: 53, NodePort: 30053, HasEndpoints: true,
		Internal: []Endpoint{{"10.244.0.3", 53}}, External: []Endpoint{{"10.244.0.3", 53}}},
		{Name: "default/api:p", ClusterIP: "10.96.0.12", ExternalIPs: []string{"192.0.2.1"}, Protocol: "tcp", Port: 443, HasEndpoints: true,
			Internal: []Endpoint{{"10.244.0.5", 8443}}}}
	got := Stale(old, next)
	want := []StaleFlow{
		// api gained its first endpoint: what was refused before goes, on every address.
		{Protocol: "tcp", Dst: "10.96.0.12", Port: 443}, {Protocol: "tcp", Dst: "192.0.2.1", Port: 443},
		// 10.244.0.2 left the UDP port; web left, but TCP flows to a gone endpoint end by themselves.
		{Protocol: "udp", Dst: "10.96.0.10", Port: 53, Endpoint: "10.244.0.2"}, {Protocol: "udp", Port: 30053, Endpoint: "10.244.0.2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("stale flows\n%+v\nwant\n%+v", got, want)
	}
	if got := Stale(next, next); len(got) != 0 {
		t.Errorf("an unchanged service has no stale flows, got %+v", got)
	}
}

// Addresses are read as Kubernetes reads them: 10.96.0.011 is 10.96.0.11, not the
// kernel's octal 10.96.0.9.
func TestBuildReadsLeadingZerosAsDecimal(t *testing.T) {
	s := svc("zeros", "10.96.0.011", 80, corev1.ProtocolTCP)
	s.Spec.ExternalIPs = []string{"192.0.2.010"}
	got := Build("node1", []*corev1.Service{s}, nil)
	if len(got) != 1 || got[0].ClusterIP != "10.96.0.11" || strings.Join(got[0].ExternalIPs, ",") != "192.0.2.10" {
		t.Errorf("built %+v", got)
	}
}

// As kube-proxy: services labelled for another proxy, or as headless, are left alone.
func TestBuildSkipsOtherProxiesServices(t *testing.T) {
	mine := svc("mine", "10.96.0.20", 80, corev1.ProtocolTCP)
	other := svc("other", "10.96.0.21", 80, corev1.ProtocolTCP)
	other.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": "foo-bar"}
	headless := svc("headless", "10.96.0.22", 80, corev1.ProtocolTCP)
	headless.Labels = map[string]string{corev1.IsHeadlessService: ""}
	got := Build("node1", []*corev1.Service{mine, other, headless}, nil)
	if len(got) != 1 || got[0].ClusterIP != "10.96.0.20" {
		t.Errorf("built %+v, want only mine", got)
	}
}
