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

// iptChain is "table/chain".
type iptState map[string][]string

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

// Chains whose rules are independent of their order: their diffs are rule deletes and
// appends, so one new service costs a rule, not a rewrite of the chain of all services.
var iptUnordered = map[string]bool{"CLUSTER": true, "NODEPORTS": true, "NOENDPOINTS": true, "CLUSTERIPS": true}

// buildIPT computes every chain the instance owns and its rules.
func buildIPT(instance, serviceCIDR string, ports []ServicePort) iptState {
	p := iptPrefix(instance)
	s := iptState{
		"nat/" + p + "-SERVICES":       {"-j " + p + "-CLUSTER", "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j " + p + "-NODEPORTS"},
		"nat/" + p + "-CLUSTER":        {},
		"nat/" + p + "-NODEPORTS":      {},
		"nat/" + p + "-POSTROUTING":    {"-m mark --mark " + hairpinMark + "/" + hairpinMark + " -j MASQUERADE"},
		"filter/" + p + "-REJECT":      {"-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT"},
		"filter/" + p + "-NOENDPOINTS": {},
		"filter/" + p + "-CLUSTERIPS":  {},
	}
	add := func(chain, rule string) { s["nat/"+p+"-"+chain] = append(s["nat/"+p+"-"+chain], rule) }
	filter := func(chain, rule string) { s["filter/"+p+"-"+chain] = append(s["filter/"+p+"-"+chain], rule) }
	var nodePortRejects []string
	seenIP := map[string]bool{}
	for i := range ports {
		sp := &ports[i]
		id := strings.ToUpper(sp.ID())
		if !seenIP[sp.ClusterIP] {
			seenIP[sp.ClusterIP] = true
			filter("CLUSTERIPS", "-d "+sp.ClusterIP+"/32 -j "+p+"-REJECT")
		}
		match := func(ip string, port int32) string {
			m := fmt.Sprintf("-p %[1]s -m %[1]s --dport %[2]d", sp.Protocol, port)
			if ip != "" {
				m = "-d " + ip + "/32 " + m
			}
			return fmt.Sprintf("-m comment --comment %q %s", sp.Name, m)
		}
		// pick fills chain with the choice among eps.
		pick := func(chain string, eps []Endpoint, masq bool) {
			s["nat/"+p+"-"+chain] = []string{}
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
				s["nat/"+p+"-"+sep] = []string{"-s " + e.IP + "/32 -j MARK --or-mark " + hairpinMark, dnat}
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
		switch {
		case !sp.HasEndpoints:
			filter("NOENDPOINTS", match(sp.ClusterIP, sp.Port)+" -j "+p+"-REJECT")
		case len(sp.Internal) == 0:
			filter("NOENDPOINTS", match(sp.ClusterIP, sp.Port)+" -j DROP")
		default:
			pick("SVC-"+id, sp.Internal, false)
			add("CLUSTER", match(sp.ClusterIP, sp.Port)+" -j "+p+"-SVC-"+id)
		}
		if len(sp.ExternalIPs) == 0 && sp.NodePort == 0 {
			continue
		}
		if len(sp.External) == 0 {
			verdict := map[bool]string{true: "-j DROP", false: "-j " + p + "-REJECT"}[sp.HasEndpoints]
			for _, ip := range sp.ExternalIPs {
				filter("NOENDPOINTS", match(ip, sp.Port)+" "+verdict)
			}
			if sp.NodePort != 0 {
				nodePortRejects = append(nodePortRejects, "-m addrtype --dst-type LOCAL "+match("", sp.NodePort)+" "+verdict)
			}
			continue
		}
		pick("EXT-"+id, sp.External, !sp.ExternalLocal)
		for _, ip := range sp.ExternalIPs {
			add("CLUSTER", match(ip, sp.Port)+" -j "+p+"-EXT-"+id)
		}
		if sp.NodePort != 0 {
			add("NODEPORTS", match("", sp.NodePort)+" -j "+p+"-EXT-"+id)
		}
	}
	// NodePorts without endpoints are on node addresses, outside the service CIDR; the
	// rest of the service CIDR (unallocated addresses) is dropped.
	s["filter/"+p+"-FILTER"] = append(nodePortRejects, "! -d "+serviceCIDR+" -j RETURN",
		"-j "+p+"-NOENDPOINTS", "-j "+p+"-CLUSTERIPS", "-j DROP")
	return s
}

// iptScript renders what turns old into next as one iptables-restore --noflush buffer:
// changed chains are rewritten, removed ones deleted, others left alone.
func iptScript(old, next iptState) string {
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		fmt.Fprintf(&b, "*%s\n", table)
		var changed, edited []string
		for _, k := range sortedKeys(next) {
			t, chain, _ := strings.Cut(k, "/")
			rules, ok := old[k]
			switch {
			case t != table || ok && slices.Equal(rules, next[k]):
			case ok && iptUnordered[chain[strings.Index(chain, "-")+1:]] && !slices.Contains(rules, "(unknown)"):
				edited = append(edited, chain)
			default:
				changed = append(changed, chain)
				fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
			}
		}
		var gone []string
		for _, k := range sortedKeys(old) {
			if t, chain, _ := strings.Cut(k, "/"); t == table {
				if _, ok := next[k]; !ok {
					gone = append(gone, chain)
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
			}
		}
		for _, chain := range edited {
			k := table + "/" + chain
			was, is := setOf(old[k]), setOf(next[k])
			for _, r := range old[k] {
				if !is[r] {
					fmt.Fprintf(&b, "-D %s %s\n", chain, r)
				}
			}
			for _, r := range next[k] {
				if !was[r] {
					fmt.Fprintf(&b, "-A %s %s\n", chain, r)
				}
			}
		}
		for _, chain := range changed {
			for _, r := range next[table+"/"+chain] {
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

func setOf(rules []string) map[string]bool {
	m := make(map[string]bool, len(rules))
	for _, r := range rules {
		m[r] = true
	}
	return m
}

// count is the number of rules the state programs.
func (s iptState) count() (rules int) {
	for _, r := range s {
		rules += len(r)
	}
	return rules
}

// parseIPTChains lists the chains with prefix in iptables-save output, as "table/chain".
func parseIPTChains(save, prefix string) iptState {
	s := iptState{}
	table := ""
	for line := range strings.SplitSeq(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"+prefix+"-"):
			chain, _, _ := strings.Cut(line[1:], " ")
			s[table+"/"+chain] = []string{"(unknown)"}
		}
	}
	return s
}
