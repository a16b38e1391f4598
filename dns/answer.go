package dns

import (
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// Answerer answers queries for the cluster zone from a Source, and hands other names
// to Forward (nil: refused).
type Answerer struct {
	Zone    string // the cluster domain, e.g. cluster.local
	TTL     uint32
	Serial  uint32
	Source  Source
	Forward func(*mdns.Msg) (*mdns.Msg, error)
	// Reverse are the networks whose reverse names are ours (service and pod CIDRs):
	// unknown addresses there are NXDOMAIN, not forwarded.
	Reverse []netip.Prefix

	zone string // lower-case FQDN
}

// NewAnswerer prepares a for answering (concurrently).
func NewAnswerer(a Answerer) *Answerer {
	a.zone = mdns.Fqdn(strings.ToLower(a.Zone))
	return &a
}

// inZone says whether name, in any case, is the zone or a name below it.
func (a *Answerer) inZone(name string) bool {
	k := len(name) - len(a.zone)
	return k >= 0 && strings.EqualFold(name[k:], a.zone) && (k == 0 || name[k-1] == '.')
}

// below returns the labels of name under the zone, the top one first, and whether name
// is in the zone at all. name is lower-case.
func (a *Answerer) below(name string) ([]string, bool) {
	if !a.inZone(name) {
		return nil, false
	}
	rel := strings.TrimSuffix(strings.TrimSuffix(name, a.zone), ".")
	if rel == "" {
		return nil, true
	}
	labels := strings.Split(rel, ".")
	slices.Reverse(labels)
	return labels, true
}

// Answer computes the reply to req. It never fails: errors become rcodes.
func (a *Answerer) Answer(req *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	if len(req.Question) != 1 {
		m.SetRcode(req, mdns.RcodeFormatError)
		return m
	}
	if req.Opcode != mdns.OpcodeQuery {
		m.SetRcode(req, mdns.RcodeNotImplemented)
		return m
	}
	m.SetReply(req)
	m.RecursionAvailable = a.Forward != nil
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR {
		m.SetRcode(req, mdns.RcodeRefused)
		return m
	}
	if ip, ok := reverseAddr(name); ok {
		return a.reverse(req, m, ip)
	}
	labels, inZone := a.below(name)
	if !inZone {
		return a.forward(req, m)
	}
	if !a.Source.Synced() {
		m.SetRcode(req, mdns.RcodeServerFailure)
		return m
	}
	m.Authoritative = true
	rrs, rcode := a.lookup(name, labels, q.Qtype, 0)
	m.Rcode = rcode
	if rcode == mdns.RcodeSuccess {
		for _, rr := range rrs {
			if _, glue := rr.(*glueA); glue {
				m.Extra = append(m.Extra, rr.(*glueA).A)
				continue
			}
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 || rcode != mdns.RcodeSuccess {
		m.Ns = []mdns.RR{a.soa()}
	}
	// Answers carry the asked spelling of the name (0x20 case randomisation).
	for _, rr := range m.Answer {
		if strings.EqualFold(rr.Header().Name, q.Name) {
			rr.Header().Name = q.Name
		}
	}
	return m
}

// glueA marks an A record that belongs in the additional section.
type glueA struct{ *mdns.A }

func (a *Answerer) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: a.TTL}
}

func (a *Answerer) soa() mdns.RR {
	return &mdns.SOA{Hdr: a.hdr(a.zone, mdns.TypeSOA), Ns: "ns.dns." + a.zone, Mbox: "hostmaster." + a.zone,
		Serial: a.Serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: a.TTL}
}

func (a *Answerer) addr(name string, ip netip.Addr, qtype uint16) mdns.RR {
	switch {
	case ip.Is4() && qtype == mdns.TypeA:
		return &mdns.A{Hdr: a.hdr(name, mdns.TypeA), A: ip.AsSlice()}
	case ip.Is6() && qtype == mdns.TypeAAAA:
		return &mdns.AAAA{Hdr: a.hdr(name, mdns.TypeAAAA), AAAA: ip.AsSlice()}
	}
	return nil
}

// lookup answers name (lower-case), whose labels below the zone are labels (top label
// first). An empty answer with RcodeSuccess is NODATA.
func (a *Answerer) lookup(name string, labels []string, qtype uint16, depth int) ([]mdns.RR, int) {
	ok := func(rrs ...mdns.RR) ([]mdns.RR, int) {
		var out []mdns.RR
		for _, rr := range rrs {
			if rr != nil {
				out = append(out, rr)
			}
		}
		return out, mdns.RcodeSuccess
	}
	nx := func() ([]mdns.RR, int) { return nil, mdns.RcodeNameError }
	n := len(labels)
	switch {
	case n == 0:
		switch qtype {
		case mdns.TypeSOA:
			return ok(a.soa())
		case mdns.TypeNS:
			return ok(&mdns.NS{Hdr: a.hdr(a.zone, mdns.TypeNS), Ns: "ns.dns." + a.zone})
		}
		return ok()
	case n == 1 && labels[0] == "dns-version":
		if qtype == mdns.TypeTXT {
			return ok(&mdns.TXT{Hdr: a.hdr(name, mdns.TypeTXT), Txt: []string{"1.1.0"}})
		}
		return ok()
	case labels[0] != "svc" && labels[0] != "pod":
		return nx()
	case n == 1: // svc.<zone>, pod.<zone>
		return ok()
	case !a.Source.Namespace(labels[1]):
		return nx()
	case n == 2: // <ns>.svc.<zone>, <ns>.pod.<zone>
		return ok()
	case labels[0] == "pod":
		ip, err := netip.ParseAddr(strings.ReplaceAll(labels[2], "-", "."))
		if n != 3 || err != nil || !ip.Is4() {
			return nx()
		}
		return ok(a.addr(name, ip, qtype))
	}
	svc := a.Source.Service(labels[1], labels[2])
	if svc == nil {
		return nx()
	}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	switch {
	case n == 3 && svc.Spec.Type == corev1.ServiceTypeExternalName:
		target := mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		rrs := []mdns.RR{&mdns.CNAME{Hdr: a.hdr(name, mdns.TypeCNAME), Target: target}}
		if qtype == mdns.TypeCNAME || depth > 5 {
			return rrs, mdns.RcodeSuccess
		}
		return append(rrs, a.chase(target, qtype, depth)...), mdns.RcodeSuccess
	case n == 3 && !headless:
		var rrs []mdns.RR
		for _, ip := range clusterIPs(svc) {
			rrs = append(rrs, a.addr(name, ip, qtype))
		}
		return ok(rrs...)
	case n == 3:
		eps := readyEndpoints(svc, a.Source.Slices(svc.Namespace, svc.Name))
		if len(eps) == 0 {
			return nx()
		}
		var rrs []mdns.RR
		for _, e := range eps {
			rrs = append(rrs, a.addr(name, e.ip, qtype))
		}
		return ok(rrs...)
	case n == 4 && headless:
		var rrs []mdns.RR
		found := false
		for _, e := range readyEndpoints(svc, a.Source.Slices(svc.Namespace, svc.Name)) {
			if e.hostname == labels[3] {
				found = true
				rrs = append(rrs, a.addr(name, e.ip, qtype))
			}
		}
		if !found {
			return nx()
		}
		return ok(rrs...)
	case n == 5 && strings.HasPrefix(labels[3], "_") && strings.HasPrefix(labels[4], "_") &&
		svc.Spec.Type != corev1.ServiceTypeExternalName:
		return a.srv(svc, name, labels[4][1:], labels[3][1:], qtype, headless)
	}
	return nx()
}

// srv answers _port._proto.<svc>: one record per named port matching, targeting the
// service (with glue) or, when headless, each ready endpoint.
func (a *Answerer) srv(svc *corev1.Service, name, port, proto string, qtype uint16, headless bool) ([]mdns.RR, int) {
	svcName := svc.Name + "." + svc.Namespace + ".svc." + a.zone
	var rrs []mdns.RR
	found := false
	for _, p := range svc.Spec.Ports {
		if p.Name == "" || strings.ToLower(p.Name) != port || strings.ToLower(string(p.Protocol)) != proto {
			continue
		}
		found = true
		if qtype != mdns.TypeSRV {
			continue
		}
		if !headless {
			rrs = append(rrs, &mdns.SRV{Hdr: a.hdr(name, mdns.TypeSRV), Port: uint16(p.Port), Target: svcName})
			for _, ip := range clusterIPs(svc) {
				if ip.Is4() {
					rrs = append(rrs, &glueA{&mdns.A{Hdr: a.hdr(svcName, mdns.TypeA), A: ip.AsSlice()}})
				}
			}
			continue
		}
		for _, e := range readyEndpoints(svc, a.Source.Slices(svc.Namespace, svc.Name)) {
			target := e.hostname + "." + svcName
			// The target port is each endpoint's; all endpoints of a port share it here.
			rrs = append(rrs, &mdns.SRV{Hdr: a.hdr(name, mdns.TypeSRV), Port: uint16(p.Port), Target: target})
			if e.ip.Is4() {
				rrs = append(rrs, &glueA{&mdns.A{Hdr: a.hdr(target, mdns.TypeA), A: e.ip.AsSlice()}})
			}
		}
	}
	if !found {
		return nil, mdns.RcodeNameError
	}
	// Equal weights summing to about 100, as CoreDNS gives them.
	var srvs []*mdns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*mdns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	for _, s := range srvs {
		s.Weight = uint16(100 / len(srvs))
	}
	return rrs, mdns.RcodeSuccess
}

// chase resolves an ExternalName target: inside the zone from the index, outside it
// through the forwarder.
func (a *Answerer) chase(target string, qtype uint16, depth int) []mdns.RR {
	if labels, inZone := a.below(target); inZone {
		rrs, _ := a.lookup(target, labels, qtype, depth+1)
		return rrs
	}
	if a.Forward == nil {
		return nil
	}
	q := new(mdns.Msg)
	q.SetQuestion(target, qtype)
	q.RecursionDesired = true
	r, err := a.Forward(q)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		return nil
	}
	return r.Answer
}

func (a *Answerer) forward(req, m *mdns.Msg) *mdns.Msg {
	if a.Forward == nil {
		m.SetRcode(req, mdns.RcodeRefused)
		return m
	}
	r, err := a.Forward(req)
	if err != nil {
		m.SetRcode(req, mdns.RcodeServerFailure)
		return m
	}
	r.Id = req.Id
	return r
}

// reverse answers PTR queries for cluster addresses.
func (a *Answerer) reverse(req, m *mdns.Msg, ip netip.Addr) *mdns.Msg {
	q := req.Question[0]
	ours := false
	for _, p := range a.Reverse {
		ours = ours || p.Contains(ip)
	}
	names := a.Source.PTR(ip)
	if len(names) == 0 && !ours {
		return a.forward(req, m)
	}
	if !a.Source.Synced() {
		m.SetRcode(req, mdns.RcodeServerFailure)
		return m
	}
	m.Authoritative = true
	if len(names) == 0 {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{a.soa()}
		return m
	}
	// A ClusterIP (svc.ns.svc) wins over endpoints with the same address.
	var svcs []string
	for _, n := range names {
		if strings.Count(n, ".") == 2 {
			svcs = append(svcs, n)
		}
	}
	if len(svcs) > 0 {
		names = svcs
	}
	slices.Sort(names)
	if q.Qtype != mdns.TypePTR {
		m.Ns = []mdns.RR{a.soa()}
		return m
	}
	for _, n := range names {
		m.Answer = append(m.Answer, &mdns.PTR{Hdr: a.hdr(q.Name, mdns.TypePTR), Ptr: n + "." + a.zone})
	}
	return m
}

// reverseAddr parses an in-addr.arpa or ip6.arpa name.
func reverseAddr(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(v4, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		slices.Reverse(parts)
		ip, err := netip.ParseAddr(strings.Join(parts, "."))
		return ip, err == nil
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		nibbles := strings.Split(v6, ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		slices.Reverse(nibbles)
		var b strings.Builder
		for i, n := range nibbles {
			if i > 0 && i%4 == 0 {
				b.WriteByte(':')
			}
			b.WriteString(n)
		}
		ip, err := netip.ParseAddr(b.String())
		return ip, err == nil
	}
	return netip.Addr{}, false
}
