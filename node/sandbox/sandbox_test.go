package sandbox

import (
	"net/netip"
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

func TestMasqueradeRules(t *testing.T) {
	n := New(Config{Instance: "mc", CIDR: netip.MustParsePrefix("10.244.0.0/16")})
	want := "table ip mc_node {}\ndelete table ip mc_node\ntable ip mc_node {\n\tchain postrouting {\n" +
		"\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade\n\t}\n}\n"
	if got := n.masqueradeRules(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
