package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzAnswer: any bytes that parse as a DNS message get an answer that packs, and
// nothing panics.
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"backend.default.svc.cluster.local.", mdns.TypeA}, {"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV},
		{"20.0.96.10.in-addr.arpa.", mdns.TypePTR}, {"ext.default.svc.cluster.local.", mdns.TypeA}, {"cluster.local.", mdns.TypeAXFR}} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, _ := m.Pack()
		f.Add(b)
	}
	a := NewAnswerer(Answerer{Zone: "cluster.local", TTL: 5, Source: cluster(), Reverse: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(mdns.Msg)
		if req.Unpack(b) != nil {
			return
		}
		resp := a.Answer(req)
		resp.Truncate(512)
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
	})
}
