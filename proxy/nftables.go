package proxy

import (
	"fmt"
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
// jumps to the shared chain for its endpoint count N, which picks an index i with
// numgen; the chain for index i then takes the DNAT target from map endpoint-i, keyed
// by (destination, protocol, port). Only services with session affinity get chains of
// their own, as dynamic sets of client addresses must be per endpoint. (A single map
// keyed by numgen as well would need a typeof declaration, which nft 1.0.6 cannot read
// back once the map holds a transport-header key.)

// pick returns the chain that picks among n endpoints, after marking the packet for
// masquerade when masq is set; key says how its traffic is keyed in the endpoint maps.
func pick(s *ruleset, n int, nodePort, masq bool) string {
	prefix, keyType, key := "", "ipv4_addr . inet_proto . inet_service", "ip daddr . meta l4proto . th dport"
	if nodePort {
		prefix, keyType, key = "nodeport-", "inet_proto . inet_service", "meta l4proto . th dport"
	}
	name := fmt.Sprintf("%spick-%d", prefix, n)
	if _, ok := s.chains[name]; !ok {
		var picks []string
		for i := range n {
			m := fmt.Sprintf("%sendpoint-%d", prefix, i)
			picks = append(picks, fmt.Sprintf("%d : goto to-%s", i, m))
			s.decls[m] = fmt.Sprintf("map { type %s : ipv4_addr . inet_service; }", keyType)
			s.chains["to-"+m] = []string{fmt.Sprintf("meta l4proto { tcp, udp, sctp } dnat ip to %s map @%s", key, m)}
		}
		s.chains[name] = []string{fmt.Sprintf("numgen random mod %d vmap { %s }", n, strings.Join(picks, ", "))}
	}
	if !masq {
		return name
	}
	s.chains["masq-"+name] = []string{fmt.Sprintf("meta mark set meta mark | %s goto %s", hairpinMark, name)}
	return "masq-" + name
}

// endpoints adds the DNAT targets of key for the pick chain's endpoint maps.
func endpoints(s *ruleset, key string, rank int, nodePort bool, eps []Endpoint) {
	prefix := ""
	if nodePort {
		prefix = "nodeport-"
	}
	for i, e := range eps {
		s.claim(prefix+key, rank, fmt.Sprintf("%sendpoint-%d", prefix, i), key, e.IP+" . "+fmt.Sprint(e.Port))
	}
}

// affinity returns the chain of a session-affinity service for the endpoints eps: a
// client seen within the timeout goes back to the endpoint it went to before.
func affinity(s *ruleset, sp *ServicePort, eps []Endpoint, name string, masq bool) string {
	var rules, picks []string
	if masq {
		rules = append(rules, fmt.Sprintf("meta mark set meta mark | %s", hairpinMark))
	}
	for i, e := range eps {
		epid := sp.EndpointID(e)
		s.decls["affinity-"+epid] = fmt.Sprintf("set { type ipv4_addr; flags dynamic,timeout; timeout %ds; }", sp.Affinity)
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
func buildNFT(ports []ServicePort) *ruleset {
	s := newRuleset()
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
		// What routes the ClusterIP is claimed at rank 0, externalIPs at 1: where one
		// service's externalIP is another's ClusterIP, the ClusterIP's rules win.
		route := func(ip string, rank int, coll, v string) { s.claim(key(ip), rank, coll, key(ip), v) }
		nodePort := func(coll, v string) { s.claim("nodeport-"+npKey, 0, coll, npKey, v) }
		switch {
		case !sp.HasEndpoints:
			route(sp.ClusterIP, 0, "no-endpoint-services", reject)
		case len(sp.Internal) == 0: // internalTrafficPolicy Local, no local endpoint
			route(sp.ClusterIP, 0, "no-endpoint-services", "drop")
		case sp.Affinity > 0:
			route(sp.ClusterIP, 0, "service-ips", "goto "+affinity(s, sp, sp.Internal, "affinity-"+sp.ID(), false))
		default:
			route(sp.ClusterIP, 0, "service-ips", "goto "+pick(s, len(sp.Internal), false, false))
			endpoints(s, key(sp.ClusterIP), 0, false, sp.Internal)
		}
		externalIPs := slices.DeleteFunc(slices.Clone(sp.ExternalIPs), func(ip string) bool { return ip == sp.ClusterIP })
		if len(externalIPs) == 0 && sp.NodePort == 0 {
			continue
		}
		masq := !sp.ExternalLocal
		switch {
		case !sp.HasEndpoints || len(sp.External) == 0:
			verdict := map[bool]string{true: "drop", false: reject}[sp.HasEndpoints]
			for _, ip := range externalIPs {
				route(ip, 1, "no-endpoint-services", verdict)
			}
			if sp.NodePort != 0 {
				nodePort("no-endpoint-nodeports", verdict)
			}
		case sp.Affinity > 0:
			chain := "goto " + affinity(s, sp, sp.External, "external-affinity-"+sp.ID(), masq)
			for _, ip := range externalIPs {
				route(ip, 1, "service-ips", chain)
			}
			if sp.NodePort != 0 {
				nodePort("service-nodeports", chain)
			}
		default:
			for _, ip := range externalIPs {
				route(ip, 1, "service-ips", "goto "+pick(s, len(sp.External), false, masq))
				endpoints(s, key(ip), 1, false, sp.External)
			}
			if sp.NodePort != 0 {
				nodePort("service-nodeports", "goto "+pick(s, len(sp.External), true, masq))
				endpoints(s, npKey, 0, true, sp.External)
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
func nftScript(table, serviceCIDR string, old, next *ruleset) string {
	var b strings.Builder
	if old == nil {
		b.WriteString(nftTable(table, serviceCIDR))
		old = newRuleset()
	}
	for _, name := range sortedKeys(next.decls) {
		if _, ok := old.decls[name]; !ok {
			kind, body, _ := strings.Cut(next.decls[name], " ")
			fmt.Fprintf(&b, "add %s ip %s %s %s\n", kind, table, name, body)
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
	names := map[string]bool{}
	for m := range old.items {
		names[m] = true
	}
	for m := range next.items {
		names[m] = true
	}
	for _, m := range sortedKeys(names) {
		if _, kept := next.decls[m]; !kept && old.decls[m] != "" {
			continue // the whole map goes below
		}
		var del, add []string
		for _, k := range sortedKeys(old.items[m]) {
			if v, ok := next.items[m][k]; !ok || v != old.items[m][k] {
				del = append(del, k)
			}
		}
		for _, k := range sortedKeys(next.items[m]) {
			if v, ok := old.items[m][k]; !ok || v != next.items[m][k] {
				if v := next.items[m][k]; v != "" {
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
	for _, name := range sortedKeys(old.decls) {
		if _, ok := next.decls[name]; !ok {
			kind, _, _ := strings.Cut(old.decls[name], " ")
			fmt.Fprintf(&b, "delete %s ip %s %s\n", kind, table, name)
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
