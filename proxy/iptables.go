package proxy

import (
	"fmt"
	"slices"
	"strings"
)

// The iptables layout is kube-proxy's: a SERVICES chain in the nat table with a rule per
// service port jumping to a per-service chain, which picks a per-endpoint chain with
// the statistic match; the endpoint chain marks hairpin traffic and DNATs. Rejects and
// drops live in one filter chain that only traffic to the service CIDR walks. Matching
// is a linear walk, so the first packet's cost grows with the number of services.

func iptPrefix(instance string) string { return strings.ToUpper(instance) }

// iptJumps are the rules in the built-in chains that lead into ours, as iptables
// arguments after the table and chain.
func iptJumps(instance string) [][]string {
	p := iptPrefix(instance)
	c := []string{"-m", "comment", "--comment", "minicluster " + instance}
	j := func(table, chain string, rule ...string) []string {
		return append(append([]string{"-t", table, chain}, c...), rule...)
	}
	return [][]string{
		j("nat", "PREROUTING", "-j", p+"-SERVICES"),
		j("nat", "OUTPUT", "-j", p+"-SERVICES"),
		j("nat", "POSTROUTING", "-j", p+"-POSTROUTING"),
		j("filter", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", p+"-FILTER"),
		j("filter", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-j", p+"-FILTER"),
		j("filter", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", p+"-FILTER"),
	}
}

// Chains whose rules are independent of their order are collections in the ruleset:
// their diffs are rule deletes and appends, so one new service costs a rule, not a
// rewrite of the chain of all services.
var iptUnordered = []string{"nat/CLUSTER", "nat/NODEPORTS", "filter/NOENDPOINTS", "filter/CLUSTERIPS", "filter/NODEPORT-REJECTS"}

// iptBase is the fixed part: the chains the built-in ones jump to, dispatching to the
// collections of per-service rules.
func iptBase(instance, serviceCIDR string) *ruleset {
	p := iptPrefix(instance)
	s := newRuleset()
	s.chains["nat/"+p+"-SERVICES"] = []string{"-j " + p + "-CLUSTER", "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j " + p + "-NODEPORTS"}
	s.chains["nat/"+p+"-POSTROUTING"] = []string{"-m mark --mark " + hairpinMark + "/" + hairpinMark + " -j MASQUERADE"}
	s.chains["filter/"+p+"-REJECT"] = []string{"-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT"}
	// NodePorts without endpoints are on node addresses, outside the service CIDR; the
	// rest of the service CIDR (unallocated addresses) is dropped.
	s.chains["filter/"+p+"-FILTER"] = []string{"-j " + p + "-NODEPORT-REJECTS", "! -d " + serviceCIDR + " -j RETURN",
		"-j " + p + "-NOENDPOINTS", "-j " + p + "-CLUSTERIPS", "-j DROP"}
	for _, c := range iptUnordered {
		table, chain, _ := strings.Cut(c, "/")
		s.items[table+"/"+p+"-"+chain] = map[string]string{}
	}
	return s
}

// buildIPT computes the chains and collection rules of the given service ports.
func buildIPT(instance string, ports []ServicePort) *ruleset {
	p := iptPrefix(instance)
	s := newRuleset()
	add := func(chain, rule string) { s.chains["nat/"+p+"-"+chain] = append(s.chains["nat/"+p+"-"+chain], rule) }
	chainOf := func(coll string) string {
		return coll[:strings.Index(coll, "/")+1] + p + "-" + coll[strings.Index(coll, "/")+1:]
	}
	collect := func(coll, rule string) { s.add(chainOf(coll), rule, "") }
	for i := range ports {
		sp := &ports[i]
		id := strings.ToUpper(sp.ID())
		collect("filter/CLUSTERIPS", "-d "+sp.ClusterIP+"/32 -j "+p+"-REJECT")
		match := func(ip string, port int32) string {
			m := fmt.Sprintf("-p %[1]s -m %[1]s --dport %[2]d", sp.Protocol, port)
			if ip != "" {
				m = "-d " + ip + "/32 " + m
			}
			return fmt.Sprintf("-m comment --comment %q %s", sp.Name, m)
		}
		// pick fills chain with the choice among eps.
		pick := func(chain string, eps []Endpoint, masq bool) {
			s.chains["nat/"+p+"-"+chain] = []string{}
			if masq {
				add(chain, "-j MARK --or-mark "+hairpinMark)
			}
			for _, e := range eps {
				sep := "SEP-" + strings.ToUpper(sp.EndpointID(e))
				dnat := fmt.Sprintf("-p %s -j DNAT --to-destination %s", sp.Protocol, e)
				if sp.Affinity > 0 {
					add(chain, fmt.Sprintf("-m recent --name %s-%s --rcheck --seconds %d --reap --mask 255.255.255.255 --rsource -j %s-%s", p, sep, sp.Affinity, p, sep))
					dnat = fmt.Sprintf("-p %s -m recent --name %s-%s --set --mask 255.255.255.255 --rsource -j DNAT --to-destination %s", sp.Protocol, p, sep, e)
				}
				s.chains["nat/"+p+"-"+sep] = []string{"-s " + e.IP + "/32 -j MARK --or-mark " + hairpinMark, dnat}
			}
			for j, e := range eps {
				sep := p + "-SEP-" + strings.ToUpper(sp.EndpointID(e))
				if n := len(eps) - j; n > 1 {
					add(chain, fmt.Sprintf("-m statistic --mode random --probability %.10f -j %s", 1/float64(n), sep))
				} else {
					add(chain, "-j "+sep)
				}
			}
		}
		// What routes the ClusterIP is claimed at rank 0, externalIPs at 1: where one
		// service's externalIP is another's ClusterIP, only the ClusterIP's rule is
		// written (both would leave the winner to the order of the rules).
		route := func(ip string, rank int, coll, rule string) {
			s.claim(fmt.Sprintf("%s . %s . %d", ip, sp.Protocol, sp.Port), rank, chainOf(coll), rule, "")
		}
		switch {
		case !sp.HasEndpoints:
			route(sp.ClusterIP, 0, "filter/NOENDPOINTS", match(sp.ClusterIP, sp.Port)+" -j "+p+"-REJECT")
		case len(sp.Internal) == 0:
			route(sp.ClusterIP, 0, "filter/NOENDPOINTS", match(sp.ClusterIP, sp.Port)+" -j DROP")
		default:
			pick("SVC-"+id, sp.Internal, false)
			route(sp.ClusterIP, 0, "nat/CLUSTER", match(sp.ClusterIP, sp.Port)+" -j "+p+"-SVC-"+id)
		}
		externalIPs := slices.DeleteFunc(slices.Clone(sp.ExternalIPs), func(ip string) bool { return ip == sp.ClusterIP })
		if len(externalIPs) == 0 && sp.NodePort == 0 {
			continue
		}
		if len(sp.External) == 0 {
			verdict := map[bool]string{true: "-j DROP", false: "-j " + p + "-REJECT"}[sp.HasEndpoints]
			for _, ip := range externalIPs {
				route(ip, 1, "filter/NOENDPOINTS", match(ip, sp.Port)+" "+verdict)
			}
			if sp.NodePort != 0 {
				collect("filter/NODEPORT-REJECTS", "-m addrtype --dst-type LOCAL "+match("", sp.NodePort)+" "+verdict)
			}
			continue
		}
		pick("EXT-"+id, sp.External, !sp.ExternalLocal)
		for _, ip := range externalIPs {
			route(ip, 1, "nat/CLUSTER", match(ip, sp.Port)+" -j "+p+"-EXT-"+id)
		}
		if sp.NodePort != 0 {
			collect("nat/NODEPORTS", match("", sp.NodePort)+" -j "+p+"-EXT-"+id)
		}
	}
	return s
}

// iptScript renders what turns old into next as one iptables-restore --noflush buffer:
// changed chains are rewritten, removed ones deleted, collections edited rule by rule,
// others left alone. With old nil every chain of next is written and the chains in
// stale that next lacks are deleted.
func iptScript(old, next *ruleset, stale []string) string {
	var b strings.Builder
	full := old == nil
	if full {
		old = newRuleset()
	}
	for _, table := range []string{"nat", "filter"} {
		in := func(k string) (string, bool) {
			t, chain, _ := strings.Cut(k, "/")
			return chain, t == table
		}
		fmt.Fprintf(&b, "*%s\n", table)
		var changed, gone []string
		for _, k := range sortedKeys(next.chains) {
			if chain, ok := in(k); ok {
				if rules, had := old.chains[k]; full || !had || !slices.Equal(rules, next.chains[k]) {
					changed = append(changed, k)
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
			}
		}
		for _, k := range sortedKeys(old.chains) {
			if chain, ok := in(k); ok {
				if _, kept := next.chains[k]; !kept {
					gone = append(gone, chain)
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
			}
		}
		if full {
			for _, k := range sortedKeys(next.items) {
				if chain, ok := in(k); ok {
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
			}
			for _, k := range stale {
				_, isChain := next.chains[k]
				_, isColl := next.items[k]
				if chain, ok := in(k); ok && !isChain && !isColl {
					gone = append(gone, chain)
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
			}
		}
		for _, k := range sortedKeys(old.items) {
			if chain, ok := in(k); ok {
				for _, r := range sortedKeys(old.items[k]) {
					if _, kept := next.items[k][r]; !kept {
						fmt.Fprintf(&b, "-D %s %s\n", chain, r)
					}
				}
			}
		}
		for _, k := range sortedKeys(next.items) {
			if chain, ok := in(k); ok {
				for _, r := range sortedKeys(next.items[k]) {
					if _, had := old.items[k][r]; !had {
						fmt.Fprintf(&b, "-A %s %s\n", chain, r)
					}
				}
			}
		}
		for _, k := range changed {
			chain, _ := in(k)
			for _, r := range next.chains[k] {
				fmt.Fprintf(&b, "-A %s %s\n", chain, r)
			}
		}
		for _, chain := range gone {
			fmt.Fprintf(&b, "-X %s\n", chain)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// iptPartChains is how many chains one transaction of a full sync declares.
const iptPartChains = 4000

// iptFullScripts writes next in full as several iptables-restore transactions, since
// iptables-nft's restore with --noflush grows with the square of a transaction's size
// (10k services × 3 endpoints: 20 s as one, under 5 s in parts). A ruleset of up to
// maxChains chains is one transaction. Else, first the chains that lead only to other
// such chains or out of ours (the services' and endpoints' chains), each after those it
// jumps to, maxChains at a time, each chain flushed and filled within one transaction,
// so every service goes from its old rules to its new ones at once; then, in one, the
// rest (the chains that lead to them, rewritten whole) and the removal of stale chains.
func iptFullScripts(next *ruleset, stale []string, maxChains int) []string {
	if len(next.chains) <= maxChains { // small enough: all at once
		return []string{iptScript(nil, next, stale)}
	}
	// ours: a rule's jump target that is one of our chains, as "table/chain".
	ours := func(table, rule string) (string, bool) {
		f := strings.Fields(rule)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "-j" || f[i] == "-g" {
				k := table + "/" + f[i+1]
				_, isChain := next.chains[k]
				_, isItems := next.items[k]
				return k, isChain || isItems
			}
		}
		return "", false
	}
	// early: chains whose jumps stay among early chains (or leave ours).
	early := map[string]bool{}
	var visit func(k string, seen map[string]bool) bool
	visit = func(k string, seen map[string]bool) bool {
		if v, done := early[k]; done {
			return v
		}
		if _, isChain := next.chains[k]; !isChain || seen[k] {
			return false
		}
		seen[k] = true
		table, _, _ := strings.Cut(k, "/")
		ok := true
		for _, r := range next.chains[k] {
			if t, isOurs := ours(table, r); isOurs && !visit(t, seen) {
				ok = false
			}
		}
		early[k] = ok
		return ok
	}
	var order []string // each early chain after the chains it jumps to
	placed := map[string]bool{}
	var place func(k string)
	place = func(k string) {
		if placed[k] {
			return
		}
		placed[k] = true
		table, _, _ := strings.Cut(k, "/")
		for _, r := range next.chains[k] {
			if t, isOurs := ours(table, r); isOurs {
				place(t)
			}
		}
		order = append(order, k)
	}
	last := newRuleset()
	last.items, last.decls = next.items, next.decls
	referenced := map[string]bool{} // by another early chain
	for _, k := range sortedKeys(next.chains) {
		if !visit(k, map[string]bool{}) {
			last.chains[k] = next.chains[k]
			continue
		}
		table, _, _ := strings.Cut(k, "/")
		for _, r := range next.chains[k] {
			if t, isOurs := ours(table, r); isOurs {
				referenced[t] = true
			}
		}
	}
	// From the top chains down, so a service's chain and its endpoints' land in the same
	// transaction: jumps to chains made in the same transaction cost iptables-nft far
	// less than jumps to chains already in the kernel.
	for _, k := range sortedKeys(next.chains) {
		if early[k] && !referenced[k] {
			place(k)
		}
	}
	for _, k := range sortedKeys(next.chains) {
		if early[k] {
			place(k)
		}
	}
	var scripts []string
	for start := 0; start < len(order); start += maxChains {
		part := newRuleset()
		for _, k := range order[start:min(start+maxChains, len(order))] {
			part.chains[k] = next.chains[k]
		}
		scripts = append(scripts, iptScript(nil, part, nil))
	}
	var gone []string
	for _, k := range stale {
		if _, kept := next.chains[k]; !kept {
			gone = append(gone, k)
		}
	}
	return append(scripts, iptScript(nil, last, gone))
}

// parseIPTChains lists the chains with prefix in iptables-save output, as "table/chain".
func parseIPTChains(save, prefix string) []string {
	var s []string
	table := ""
	for line := range strings.SplitSeq(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"+prefix+"-"):
			chain, _, _ := strings.Cut(line[1:], " ")
			s = append(s, table+"/"+chain)
		}
	}
	return s
}
