package sandbox

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIPAM(t *testing.T) {
	p := newIPAM(netip.MustParsePrefix("10.244.0.0/29")) // hosts .1-.6, .1 the gateway
	var got []string
	for i := 0; i < 5; i++ {
		ip, err := p.allocate("p")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if want := "[10.244.0.2 10.244.0.3 10.244.0.4 10.244.0.5 10.244.0.6]"; fmtList(got) != want {
		t.Errorf("allocated %v, want %s", got, want)
	}
	if _, err := p.allocate("p"); err != ErrNoAddress {
		t.Errorf("full range: %v", err)
	}
	p.release(netip.MustParseAddr("10.244.0.3"))
	p.release(netip.MustParseAddr("10.244.0.5"))
	if ip, _ := p.allocate("q"); ip.String() != "10.244.0.3" {
		t.Errorf("after wrapping: %s", ip)
	}
	p2 := newIPAM(netip.MustParsePrefix("10.244.0.0/29"))
	p2.reserve(netip.MustParseAddr("10.244.0.2"), "adopted")
	if ip, _ := p2.allocate("x"); ip.String() != "10.244.0.3" {
		t.Errorf("reserved address handed out: %s", ip)
	}
}

func fmtList(l []string) string {
	s := "["
	for i, x := range l {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}

func TestNodeRules(t *testing.T) {
	n := New(Config{Instance: "mc", CIDR: netip.MustParsePrefix("10.244.0.0/16")})
	got := n.nodeRules([]HostPort{{Protocol: "tcp", Port: 8080, PodIP: netip.MustParseAddr("10.244.0.5"), PodPort: 80},
		{Protocol: "udp", Port: 5353, HostIP: netip.MustParseAddr("192.0.2.1"), PodIP: netip.MustParseAddr("10.244.0.6"), PodPort: 53}})
	for _, want := range []string{
		"table ip mc_node {}\ndelete table ip mc_node\ntable ip mc_node {\n",
		"\tchain hostports {\n\t\ttcp dport 8080 dnat to 10.244.0.5:80\n\t\tip daddr 192.0.2.1 udp dport 5353 dnat to 10.244.0.6:53\n\t}\n",
		"type nat hook prerouting priority -110; policy accept;\n\t\tfib daddr type local jump hostports\n",
		"type nat hook output priority -110; policy accept;\n\t\tfib daddr type local jump hostports\n",
		"\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
