package apiserver

import (
	"fmt"
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

// externalIPs that would take the node's own traffic are refused as kube-apiserver
// refuses them (issue 19: externalIPs [127.0.0.1] with port 6443 took the API down).
func TestSpecialExternalIPs(t *testing.T) {
	s := newTestServer(t)
	svc := func(name, ip string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{"ports":[{"port":6443}],"externalIPs":["` + ip + `"]}}`
	}
	path := "/api/v1/namespaces/default/services"
	var steps []step
	for i, ip := range []string{"127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.5", "::1", "fe80::1"} {
		steps = append(steps, step{name: ip, method: "POST", path: path, contentType: jsonCT, body: svc(fmt.Sprintf("s%d", i), ip),
			wantCode: 422, check: wantCauses("spec.externalIPs[0]")})
	}
	steps = append(steps, step{name: "an ordinary address", method: "POST", path: path, contentType: jsonCT, body: svc("ok", "192.0.2.10"), wantCode: 201})
	runSteps(t, s, steps)
}

// Issue 19 (12): the same nodePort twice in a service (for one protocol) and the
// service range's broadcast address are refused.
func TestDuplicateNodePortAndBroadcastClusterIP(t *testing.T) {
	s := newTestServer(t)
	path := "/api/v1/namespaces/default/services"
	runSteps(t, s, []step{
		{name: "same nodePort twice", method: "POST", path: path, contentType: jsonCT, wantCode: 422, check: wantCauses("spec.ports[1].nodePort"),
			body: `{"metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"name":"a","port":80,"nodePort":30090},{"name":"b","port":81,"nodePort":30090}]}}`},
		{name: "same nodePort, TCP and UDP", method: "POST", path: path, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"dns"},"spec":{"type":"NodePort","ports":[{"name":"a","port":53,"nodePort":30053},{"name":"b","port":53,"protocol":"UDP","nodePort":30053}]}}`},
		{name: "broadcast address", method: "POST", path: path, contentType: jsonCT, wantCode: 422, check: wantCauses("spec.clusterIPs[0]"),
			body: `{"metadata":{"name":"bc"},"spec":{"clusterIP":"10.111.255.255","ports":[{"port":80}]}}`},
		{name: "the address below it", method: "POST", path: path, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"last"},"spec":{"clusterIP":"10.111.255.254","ports":[{"port":80}]}}`},
	})
}
