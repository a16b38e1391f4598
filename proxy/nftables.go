package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// hairpinMark marks packets to be masqueraded: external traffic under the Cluster
// policy (iptables mode also uses it for hairpin connections).
const hairpinMark = "0x4000"

// The nftables layout keeps the number of chains independent of the number of
// services: the kernel's cost of loading a ruleset grows with its chains (10,000
// services with a chain per service and per endpoint take nft about a minute to load
// here) but hardly with map elements. So one lookup in service-ips finds a service and
// jumps to the shared chain for its endpoint count N, which picks an endpoint with one
// more lookup: (ClusterIP, protocol, port, numgen mod N) in backends gives the DNAT
// target. Only services with session affinity get chains of their own, as dynamic sets
// of client addresses must be per endpoint.

// nftState is the proxy's table as data: the elements of every map and set, the
// regular chains and their rules, and the affinity sets.
type nftState struct {
	elems  map[string]map[string]string // map or set → key → value ("" for sets)
	chains map[string][]string
	sets   map[string]int32 // affinity set → timeout seconds
}

func newNFTState() *nftState {
	s := &nftState{elems: map[string]map[string]string{}, chains: map[string][]string{}, sets: map[string]int32{}}
	for _, m := range nftMaps {
		s.elems[m] = map[string]string{}
	}
	return s
}

// The maps and sets the table always has, in declaration order.
var nftMaps = []string{"service-ips", "service-nodeports", "backends", "nodeport-backends",
	"no-endpoint-services", "no-endpoint-nodeports", "cluster-ips", "hairpin"}

func (s *nftState) add(m, k, v string) { s.elems[m][k] = v }

// pick returns the chain that picks among n endpoints by looking up backends (or
// nodeport-backends), after marking the packet for masquerade when masq is set.
func (s *nftState) pick(n int, nodePort, masq bool) string {
	name, m, key := fmt.Sprintf("pick-%d", n), "backends", "ip daddr . meta l4proto . th dport"
	if nodePort {
		name, m, key = fmt.Sprintf("nodeport-pick-%d", n), "nodeport-backends", "meta l4proto . th dport"
	}
	if _, ok := s.chains[name]; !ok {
		s.chains[name] = []string{fmt.Sprintf("meta l4proto { tcp, udp, sctp } dnat ip to %s . numgen random mod %d map @%s", key, n, m)}
	}
	if !masq {
		return name
	}
	s.chains["masq-"+name] = []string{fmt.Sprintf("meta mark set meta mark | %s goto %s", hairpinMark, name)}
	return "masq-" + name
}

// affinity returns the chain of a session-affinity service for the endpoints eps: a
// client seen within the timeout goes back to the endpoint it went to before.
func (s *nftState) affinity(sp *ServicePort, eps []Endpoint, name string, masq bool) string {
	var rules, picks []string
	if masq {
		rules = append(rules, fmt.Sprintf("meta mark set meta mark | %s", hairpinMark))
	}
	for i, e := range eps {
		epid := sp.EndpointID(e)
		s.sets["affinity-"+epid] = sp.Affinity
		s.chains["endpoint-"+epid] = []string{
			fmt.Sprintf("update @affinity-%s { ip saddr }", epid),
			fmt.Sprintf("meta l4proto %s dnat ip to %s", sp.Protocol, e),
		}
		rules = append(rules, fmt.Sprintf("ip saddr @affinity-%s goto endpoint-%s", epid, epid))
		picks = append(picks, fmt.Sprintf("%d : goto endpoint-%s", i, epid))
	}
	s.chains[name] = append(rules, fmt.Sprintf("numgen random mod %d vmap { %s }", len(eps), strings.Join(picks, ", ")))
	return name
}

// buildNFT computes the desired table contents.
func buildNFT(ports []ServicePort) *nftState {
	s := newNFTState()
	reject := "goto reject-chain"
	for i := range ports {
		sp := &ports[i]
		s.add("cluster-ips", sp.ClusterIP, "")
		key := func(ip string) string { return fmt.Sprintf("%s . %s . %d", ip, sp.Protocol, sp.Port) }
		npKey := fmt.Sprintf("%s . %d", sp.Protocol, sp.NodePort)
		for _, e := range sp.Internal {
			s.add("hairpin", e.IP+" . "+e.IP, "")
		}
		for _, e := range sp.External {
			s.add("hairpin", e.IP+" . "+e.IP, "")
		}
		switch {
		case !sp.HasEndpoints:
			s.add("no-endpoint-services", key(sp.ClusterIP), reject)
		case len(sp.Internal) == 0: // internalTrafficPolicy Local, no local endpoint
			s.add("no-endpoint-services", key(sp.ClusterIP), "drop")
		case sp.Affinity > 0:
			s.add("service-ips", key(sp.ClusterIP), "goto "+s.affinity(sp, sp.Internal, "affinity-"+sp.ID(), false))
		default:
			s.add("service-ips", key(sp.ClusterIP), "goto "+s.pick(len(sp.Internal), false, false))
			for j, e := range sp.Internal {
				s.add("backends", fmt.Sprintf("%s . %d", key(sp.ClusterIP), j), e.IP+" . "+fmt.Sprint(e.Port))
			}
		}
		if len(sp.ExternalIPs) == 0 && sp.NodePort == 0 {
			continue
		}
		masq := !sp.ExternalLocal
		switch {
		case !sp.HasEndpoints || len(sp.External) == 0:
			verdict := map[bool]string{true: "drop", false: reject}[sp.HasEndpoints]
			for _, ip := range sp.ExternalIPs {
				s.add("no-endpoint-services", key(ip), verdict)
			}
			if sp.NodePort != 0 {
				s.add("no-endpoint-nodeports", npKey, verdict)
			}
		case sp.Affinity > 0:
			chain := "goto " + s.affinity(sp, sp.External, "external-affinity-"+sp.ID(), masq)
			for _, ip := range sp.ExternalIPs {
				s.add("service-ips", key(ip), chain)
			}
			if sp.NodePort != 0 {
				s.add("service-nodeports", npKey, chain)
			}
		default:
			for _, ip := range sp.ExternalIPs {
				s.add("service-ips", key(ip), "goto "+s.pick(len(sp.External), false, masq))
				for j, e := range sp.External {
					s.add("backends", fmt.Sprintf("%s . %d", key(ip), j), e.IP+" . "+fmt.Sprint(e.Port))
				}
			}
			if sp.NodePort != 0 {
				s.add("service-nodeports", npKey, "goto "+s.pick(len(sp.External), true, masq))
				for j, e := range sp.External {
					s.add("nodeport-backends", fmt.Sprintf("%s . %d", npKey, j), e.IP+" . "+fmt.Sprint(e.Port))
				}
			}
		}
	}
	return s
}

// nftTable is the fixed part of the table: maps, sets and the base chains that
// dispatch through them.
func nftTable(table, serviceCIDR string) string {
	return fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
	}
	map backends {
		typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport
	}
	map nodeport-backends {
		typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict
	}
	set cluster-ips {
		type ipv4_addr
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
	}
	chain reject-chain {
		meta l4proto tcp reject with tcp reset
		reject
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports
	}
	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority 100; policy accept;
		meta mark & %[3]s == %[3]s masquerade
		ct status dnat ip saddr . ip daddr @hairpin masquerade
	}
	chain filter-checks {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
		ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
		ip daddr @cluster-ips goto reject-chain
		ip daddr %[2]s drop
	}
	chain filter-input {
		type filter hook input priority -10; policy accept;
		ct state new jump filter-checks
	}
	chain filter-forward {
		type filter hook forward priority -10; policy accept;
		ct state new jump filter-checks
	}
	chain filter-output {
		type filter hook output priority -10; policy accept;
		ct state new jump filter-checks
	}
}
`, table, serviceCIDR, hairpinMark)
}

// nftScript renders what turns old into next as one nft transaction; with old nil it
// replaces the whole table.
func nftScript(table, serviceCIDR string, old, next *nftState) string {
	var b strings.Builder
	if old == nil {
		b.WriteString(nftTable(table, serviceCIDR))
		old = newNFTState()
	}
	for _, name := range sortedKeys(next.sets) {
		if _, ok := old.sets[name]; !ok {
			fmt.Fprintf(&b, "add set ip %s %s { type ipv4_addr; flags dynamic,timeout; timeout %ds; }\n", table, name, next.sets[name])
		}
	}
	for _, name := range sortedKeys(next.chains) {
		if _, ok := old.chains[name]; !ok {
			fmt.Fprintf(&b, "add chain ip %s %s\n", table, name)
		}
	}
	for _, name := range sortedKeys(next.chains) {
		rules, had := old.chains[name]
		if had && slices.Equal(rules, next.chains[name]) {
			continue
		}
		if had {
			fmt.Fprintf(&b, "flush chain ip %s %s\n", table, name)
		}
		for _, r := range next.chains[name] {
			fmt.Fprintf(&b, "add rule ip %s %s %s\n", table, name, r)
		}
	}
	gone := []string{}
	for _, name := range sortedKeys(old.chains) {
		if _, ok := next.chains[name]; !ok {
			gone = append(gone, name)
			fmt.Fprintf(&b, "flush chain ip %s %s\n", table, name)
		}
	}
	for _, m := range nftMaps {
		var del, add []string
		for _, k := range sortedKeys(old.elems[m]) {
			if v, ok := next.elems[m][k]; !ok || v != old.elems[m][k] {
				del = append(del, k)
			}
		}
		for _, k := range sortedKeys(next.elems[m]) {
			if v, ok := old.elems[m][k]; !ok || v != next.elems[m][k] {
				if v := next.elems[m][k]; v != "" {
					k += " : " + v
				}
				add = append(add, k)
			}
		}
		writeElements(&b, "delete", table, m, del)
		writeElements(&b, "add", table, m, add)
	}
	for _, name := range gone {
		fmt.Fprintf(&b, "delete chain ip %s %s\n", table, name)
	}
	for _, name := range sortedKeys(old.sets) {
		if _, ok := next.sets[name]; !ok {
			fmt.Fprintf(&b, "delete set ip %s %s\n", table, name)
		}
	}
	return b.String()
}

// writeElements writes elements in commands of bounded length.
func writeElements(b *strings.Builder, verb, table, m string, elems []string) {
	for len(elems) > 0 {
		n := min(len(elems), 1000)
		fmt.Fprintf(b, "%s element ip %s %s { %s }\n", verb, table, m, strings.Join(elems[:n], ", "))
		elems = elems[n:]
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// count is the number of rules and elements the state programs.
func (s *nftState) count() (rules, elements int) {
	for _, r := range s.chains {
		rules += len(r)
	}
	for _, e := range s.elems {
		elements += len(e)
	}
	return rules, elements + len(s.sets)
}
