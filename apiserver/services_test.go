package apiserver

import (
	"net/netip"
	"testing"
)

func TestPrefixMath(t *testing.T) {
	tests := []struct {
		prefix string
		size   uint64
		nth    uint64
		addr   string
	}{
		{"10.96.0.0/12", 1<<20 - 2, 0, "10.96.0.1"},
		{"10.96.0.0/12", 1<<20 - 2, 255, "10.96.1.0"},
		{"10.244.0.0/24", 254, 253, "10.244.0.254"},
		{"192.168.0.0/30", 2, 1, "192.168.0.2"},
		{"10.0.0.0/31", 0, 0, "10.0.0.1"},
		{"fd00::/120", 255, 0, "fd00::1"},
		{"10.0.0.0/8", 1<<24 - 2, 0, "10.0.0.1"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.prefix)
		if got := hostCount(p); got != tt.size {
			t.Errorf("hostCount(%s) = %d, want %d", tt.prefix, got, tt.size)
		}
		if got := nthAddr(p, tt.nth).String(); got != tt.addr {
			t.Errorf("nthAddr(%s, %d) = %s, want %s", tt.prefix, tt.nth, got, tt.addr)
		}
	}
}
