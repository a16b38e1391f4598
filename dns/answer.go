package dns

import (
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
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

// Answer computes the reply to req. It never fails: errors become rcodes. A query with
// EDNS gets EDNS back (its DO bit copied, RFC 3225), a version other than 0 BADVERS
// (RFC 6891).
func (a *Answerer) Answer(req *mdns.Msg) *mdns.Msg {
	m := a.answer(req)
	m.Extra = slices.DeleteFunc(m.Extra, func(rr mdns.RR) bool { return rr.Header().Rrtype == mdns.TypeOPT })
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(max(opt.UDPSize(), 512), opt.Do())
	}
	return m
}

func (a *Answerer) answer(req *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	if len(req.Question) != 1 {
		m.SetRcode(req, mdns.RcodeFormatError)
		return m
	}
	if req.Opcode != mdns.OpcodeQuery {
		m.SetRcode(req, mdns.RcodeNotImplemented)
		return m
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		m.SetRcode(req, mdns.RcodeBadVers)
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
	ip, isReverse := reverseAddr(name)
	labels, inZone := a.below(name)
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY && (inZone || isReverse) {
		m.SetRcode(req, mdns.RcodeRefused) // the cluster's names are IN only
		return m
	}
	if isReverse {
		return a.reverse(req, m, ip)
	}
	if !inZone {
		return a.forward(req, m)
	}
	if !a.Source.Synced() {
		m.SetRcode(req, mdns.RcodeServerFailure)
		return m
	}
	m.Authoritative = true
	rrs, rcode := a.lookup(name, labels, q.Qtype, map[string]bool{name: true})
	m.Rcode = rcode
	hasType := false
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *glueA:
			m.Extra = append(m.Extra, rr.A)
		case *authority:
			m.Ns = append(m.Ns, rr.RR)
		default:
			m.Answer = append(m.Answer, rr)
			hasType = hasType || rr.Header().Rrtype == q.Qtype
		}
	}
	// Negative answers (NXDOMAIN, or no record of the type at the end of the chain)
	// carry the SOA of the zone of the chain's end (RFC 2308): ours, or for an end
	// outside the cluster the upstream's authority, if it gave one.
	end := name
	for _, rr := range m.Answer {
		if c, ok := rr.(*mdns.CNAME); ok {
			end = c.Target
		}
	}
	if (rcode == mdns.RcodeNameError || rcode == mdns.RcodeSuccess && !hasType) && len(m.Ns) == 0 && a.inZone(end) {
		m.Ns = []mdns.RR{a.soa(a.zone)}
	}
	// Answers carry the asked spelling of the name (0x20 case randomisation).
	for _, rr := range m.Answer {
		if strings.EqualFold(rr.Header().Name, q.Name) {
			rr.Header().Name = q.Name
		}
	}
	return m
}

// glueA marks an A record that belongs in the additional section, authority one for
// the authority section.
type (
	glueA     struct{ *mdns.A }
	authority struct{ mdns.RR }
)

func (a *Answerer) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: a.TTL}
}

// soa is the SOA of zone (the cluster's, or a reverse zone of its networks); its
// primary server is the cluster's, ns.dns.<cluster zone>.
func (a *Answerer) soa(zone string) mdns.RR {
	return &mdns.SOA{Hdr: a.hdr(zone, mdns.TypeSOA), Ns: "ns.dns." + a.zone, Mbox: "hostmaster." + a.zone,
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

// nameservers are the addresses of the cluster's DNS service (kube-system/kube-dns).
func (a *Answerer) nameservers() []netip.Addr {
	if svc := a.Source.Service("kube-system", "kube-dns"); svc != nil {
		return clusterIPs(svc)
	}
	return nil
}

// lookup answers name (lower-case), whose labels below the zone are labels (top label
// first); seen are the names an ExternalName chain has passed. An empty answer with
// RcodeSuccess is NODATA.
func (a *Answerer) lookup(name string, labels []string, qtype uint16, seen map[string]bool) ([]mdns.RR, int) {
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
			return ok(a.soa(a.zone))
		case mdns.TypeNS:
			rrs := []mdns.RR{&mdns.NS{Hdr: a.hdr(a.zone, mdns.TypeNS), Ns: "ns.dns." + a.zone}}
			for _, ip := range a.nameservers() {
				if ip.Is4() {
					rrs = append(rrs, &glueA{&mdns.A{Hdr: a.hdr("ns.dns."+a.zone, mdns.TypeA), A: ip.AsSlice()}})
				}
			}
			return ok(rrs...)
		}
		return ok()
	case n == 1 && labels[0] == "dns-version":
		if qtype == mdns.TypeTXT {
			txt := &mdns.TXT{Hdr: a.hdr(name, mdns.TypeTXT), Txt: []string{"1.1.0"}}
			txt.Hdr.Ttl = 28800 // as CoreDNS: the schema's version does not change
			return ok(txt)
		}
		return ok()
	case n <= 2 && labels[0] == "dns": // ns.dns.<zone>, the zone's name server
		if n == 1 {
			return ok()
		}
		if labels[1] != "ns" {
			return nx()
		}
		var rrs []mdns.RR
		for _, ip := range a.nameservers() {
			rrs = append(rrs, a.addr(name, ip, qtype))
		}
		return ok(rrs...)
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
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if n != 3 {
			return nx()
		}
		target := mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		rrs := []mdns.RR{&mdns.CNAME{Hdr: a.hdr(name, mdns.TypeCNAME), Target: target}}
		if qtype == mdns.TypeCNAME {
			return rrs, mdns.RcodeSuccess
		}
		more, rcode := a.chase(target, qtype, seen)
		return append(rrs, more...), rcode
	}
	svcName := svc.Name + "." + svc.Namespace + ".svc." + a.zone
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	switch {
	case n == 3 && !headless && qtype == mdns.TypeSRV:
		return a.serviceSRV(svc, name, "", "")
	case n == 3 && !headless:
		var rrs []mdns.RR
		for _, ip := range clusterIPs(svc) {
			rrs = append(rrs, a.addr(name, ip, qtype))
		}
		return ok(rrs...)
	case n == 3 || n == 4: // a headless service's endpoints, or one endpoint by name
		var eps []endpoint
		for _, e := range readyEndpoints(svc, a.Source.Slices(svc.Namespace, svc.Name)) {
			if n == 3 || e.hostname == labels[3] {
				eps = append(eps, e)
			}
		}
		if len(eps) == 0 {
			return nx()
		}
		if qtype == mdns.TypeSRV {
			return a.endpointSRV(eps, name, svcName, "", ""), mdns.RcodeSuccess
		}
		var rrs []mdns.RR
		for _, e := range eps {
			rrs = append(rrs, a.addr(name, e.ip, qtype))
		}
		return ok(rrs...)
	case n == 5 && strings.HasPrefix(labels[3], "_") && strings.HasPrefix(labels[4], "_"):
		port, proto := labels[4][1:], labels[3][1:]
		if !headless {
			rrs, rcode := a.serviceSRV(svc, name, port, proto)
			if qtype != mdns.TypeSRV {
				return nil, rcode
			}
			return rrs, rcode
		}
		eps := readyEndpoints(svc, a.Source.Slices(svc.Namespace, svc.Name))
		rrs := a.endpointSRV(eps, name, svcName, port, proto)
		if len(rrs) == 0 {
			return nx()
		}
		if qtype != mdns.TypeSRV {
			return ok()
		}
		return rrs, mdns.RcodeSuccess
	}
	return nx()
}

// matchPort says whether a port (name, protocol) is one a query's _port._proto asks
// for; empty ones ask for every port.
func matchPort(port, proto, name string, protocol corev1.Protocol) bool {
	return (port == "" || strings.EqualFold(port, name)) && (proto == "" || strings.EqualFold(proto, string(protocol)))
}

// serviceSRV answers SRV for a ClusterIP service: one record per port (named port
// and protocol matching, if given), targeting the service, with its address as glue.
func (a *Answerer) serviceSRV(svc *corev1.Service, name, port, proto string) ([]mdns.RR, int) {
	svcName := svc.Name + "." + svc.Namespace + ".svc." + a.zone
	var rrs []mdns.RR
	for _, p := range svc.Spec.Ports {
		if (port != "" && p.Name == "") || !matchPort(port, proto, p.Name, p.Protocol) {
			continue
		}
		rrs = append(rrs, &mdns.SRV{Hdr: a.hdr(name, mdns.TypeSRV), Port: uint16(p.Port), Target: svcName})
	}
	if len(rrs) == 0 {
		if port != "" {
			return nil, mdns.RcodeNameError
		}
		return nil, mdns.RcodeSuccess
	}
	weigh(rrs)
	rrs = dedupe(rrs) // two protocols on one port number
	for _, ip := range clusterIPs(svc) {
		if ip.Is4() {
			rrs = append(rrs, &glueA{&mdns.A{Hdr: a.hdr(svcName, mdns.TypeA), A: ip.AsSlice()}})
		}
	}
	return rrs, mdns.RcodeSuccess
}

// endpointSRV answers SRV for endpoints: one record per endpoint and port of its
// EndpointSlice (the port the endpoint listens on; named port and protocol matching,
// if given), targeting the endpoint's name, with its address as glue.
func (a *Answerer) endpointSRV(eps []endpoint, name, svcName, port, proto string) []mdns.RR {
	var rrs, glue []mdns.RR
	for _, e := range eps {
		target := e.hostname + "." + svcName
		found := false
		for _, p := range e.ports {
			if p.Port == nil || (port != "" && ptr.Deref(p.Name, "") == "") ||
				!matchPort(port, proto, ptr.Deref(p.Name, ""), ptr.Deref(p.Protocol, corev1.ProtocolTCP)) {
				continue
			}
			found = true
			rrs = append(rrs, &mdns.SRV{Hdr: a.hdr(name, mdns.TypeSRV), Port: uint16(*p.Port), Target: target})
		}
		if found && e.ip.Is4() {
			glue = append(glue, &glueA{&mdns.A{Hdr: a.hdr(target, mdns.TypeA), A: e.ip.AsSlice()}})
		}
	}
	weigh(rrs)
	return append(dedupe(rrs), glue...)
}

// weigh gives SRV records equal weights summing to about 100, as CoreDNS does (counting
// records that then turn out to be the same, which dedupe drops).
func weigh(rrs []mdns.RR) {
	for _, rr := range rrs {
		rr.(*mdns.SRV).Weight = uint16(100 / len(rrs))
	}
}

// dedupe drops records equal to an earlier one.
func dedupe(rrs []mdns.RR) []mdns.RR {
	seen := map[string]bool{}
	return slices.DeleteFunc(rrs, func(rr mdns.RR) bool {
		k := rr.String()
		if seen[k] {
			return true
		}
		seen[k] = true
		return false
	})
}

// chase resolves an ExternalName target: inside the zone from the index, outside it
// through the forwarder. The rcode is the chain's end's (RFC 6604); a target the chain
// has passed already is a loop: SERVFAIL, each name's CNAME given once.
func (a *Answerer) chase(target string, qtype uint16, seen map[string]bool) ([]mdns.RR, int) {
	if seen[target] {
		return nil, mdns.RcodeServerFailure
	}
	seen[target] = true
	if labels, inZone := a.below(target); inZone {
		return a.lookup(target, labels, qtype, seen)
	}
	if a.Forward == nil {
		return nil, mdns.RcodeSuccess
	}
	q := new(mdns.Msg)
	q.SetQuestion(target, qtype)
	q.RecursionDesired = true
	r, err := a.Forward(q)
	if err != nil {
		return nil, mdns.RcodeServerFailure
	}
	rrs := slices.Clone(r.Answer)
	for _, rr := range r.Ns {
		rrs = append(rrs, &authority{rr})
	}
	return rrs, r.Rcode
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
		m.Ns = []mdns.RR{a.soa(a.reverseZone(ip))}
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
		m.Ns = []mdns.RR{a.soa(a.reverseZone(ip))}
		return m
	}
	for _, n := range names {
		m.Answer = append(m.Answer, &mdns.PTR{Hdr: a.hdr(q.Name, mdns.TypePTR), Ptr: n + "." + a.zone})
	}
	return m
}

// reverseZone is the reverse zone of ip's network among the cluster's (cut at the
// last whole octet or nibble of its prefix, as reverse zones are); for another
// address, in-addr.arpa or ip6.arpa itself.
func (a *Answerer) reverseZone(ip netip.Addr) string {
	step, top := 8, "in-addr.arpa."
	if ip.Is6() {
		step, top = 4, "ip6.arpa."
	}
	for _, p := range a.Reverse {
		if !p.Contains(ip) {
			continue
		}
		full, _ := mdns.ReverseAddr(ip.String()) // every label of the address
		labels := strings.Split(strings.TrimSuffix(full, top), ".")
		keep := p.Bits() / step
		return strings.Join(labels[len(labels)-1-keep:], ".") + top
	}
	return top
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
