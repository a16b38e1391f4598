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

// buildIPT computes every chain the instance owns and its rules.
func buildIPT(instance, serviceCIDR string, ports []ServicePort) iptState {
	p := iptPrefix(instance)
	s := iptState{"nat/" + p + "-SERVICES": nil, "nat/" + p + "-NODEPORTS": nil,
		"nat/" + p + "-POSTROUTING": {"-m mark --mark " + hairpinMark + "/" + hairpinMark + " -j MASQUERADE"},
		"filter/" + p + "-FILTER":   {"! -d " + serviceCIDR + " -j RETURN"}}
	add := func(chain, rule string) { s["nat/"+chain] = append(s["nat/"+chain], rule) }
	filter := func(rule string) { s["filter/"+p+"-FILTER"] = append(s["filter/"+p+"-FILTER"], rule) }
	var tail []string
	for i := range ports {
		sp := &ports[i]
		id := strings.ToUpper(sp.ID())
		match := func(ip string, port int32) string {
			m := fmt.Sprintf("-p %[1]s -m %[1]s --dport %[2]d", sp.Protocol, port)
			if ip != "" {
				m = "-d " + ip + "/32 " + m
			}
			return m
		}
		reject := "-j REJECT"
		if sp.Protocol == "tcp" {
			reject += " --reject-with tcp-reset"
		}
		comment := fmt.Sprintf("-m comment --comment %q ", sp.Name)
		// pick fills chain with the choice among eps.
		pick := func(chain string, eps []Endpoint, masq bool) {
			s["nat/"+chain] = []string{}
			if masq {
				add(chain, "-j MARK --or-mark "+hairpinMark)
			}
			for _, e := range eps {
				sep := p + "-SEP-" + strings.ToUpper(sp.EndpointID(e))
				dnat := fmt.Sprintf("-p %s -j DNAT --to-destination %s", sp.Protocol, e)
				if sp.Affinity > 0 {
					add(chain, fmt.Sprintf("-m recent --name %s --rcheck --seconds %d --reap --mask 255.255.255.255 --rsource -j %s", sep, sp.Affinity, sep))
					dnat = fmt.Sprintf("-p %s -m recent --name %s --set --mask 255.255.255.255 --rsource -j DNAT --to-destination %s", sp.Protocol, sep, e)
				}
				s["nat/"+sep] = []string{"-s " + e.IP + "/32 -j MARK --or-mark " + hairpinMark, dnat}
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
			filter(comment + match(sp.ClusterIP, sp.Port) + " " + reject)
		case len(sp.Internal) == 0:
			filter(comment + match(sp.ClusterIP, sp.Port) + " -j DROP")
		default:
			pick(p+"-SVC-"+id, sp.Internal, false)
			add(p+"-SERVICES", comment+match(sp.ClusterIP, sp.Port)+" -j "+p+"-SVC-"+id)
		}
		if len(sp.ExternalIPs) > 0 || sp.NodePort != 0 {
			if len(sp.External) == 0 {
				verdict := map[bool]string{true: "-j DROP", false: reject}[sp.HasEndpoints]
				for _, ip := range sp.ExternalIPs {
					filter(comment + match(ip, sp.Port) + " " + verdict)
				}
				if sp.NodePort != 0 {
					tail = append(tail, comment+"-m addrtype --dst-type LOCAL "+match("", sp.NodePort)+" "+verdict)
				}
			} else {
				ext := p + "-EXT-" + id
				pick(ext, sp.External, !sp.ExternalLocal)
				for _, ip := range sp.ExternalIPs {
					add(p+"-SERVICES", comment+match(ip, sp.Port)+" -j "+ext)
				}
				if sp.NodePort != 0 {
					add(p+"-NODEPORTS", comment+match("", sp.NodePort)+" -j "+ext)
				}
			}
		}
	}
	add(p+"-SERVICES", "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j "+p+"-NODEPORTS")
	seen := map[string]bool{}
	for _, sp := range ports {
		if !seen[sp.ClusterIP] {
			seen[sp.ClusterIP] = true
			filter("-d " + sp.ClusterIP + "/32 -p tcp -j REJECT --reject-with tcp-reset")
			filter("-d " + sp.ClusterIP + "/32 -j REJECT")
		}
	}
	filter("-j DROP") // the rest of the service CIDR
	// NodePorts without endpoints are on node addresses, outside the service CIDR.
	s["filter/"+p+"-FILTER"] = append(tail, s["filter/"+p+"-FILTER"]...)
	return s
}

// iptScript renders what turns old into next as one iptables-restore --noflush buffer:
// changed chains are rewritten, removed ones deleted, others left alone.
func iptScript(old, next iptState) string {
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		fmt.Fprintf(&b, "*%s\n", table)
		var changed []string
		for _, k := range sortedKeys(next) {
			if t, chain, _ := strings.Cut(k, "/"); t == table {
				if rules, ok := old[k]; !ok || !slices.Equal(rules, next[k]) {
					changed = append(changed, chain)
					fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
				}
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
