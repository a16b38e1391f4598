package proxy

import (
	"fmt"
	"strings"
)

// hairpinMark marks connections a pod makes to itself through its service; they are
// masqueraded so the reply comes back through the node.
const hairpinMark = "0x4000"

// RenderNFT renders the whole ruleset as one nft script that replaces the table in a
// single transaction: a verdict map dispatches (ClusterIP, protocol, port) to the
// service's chain, which picks an endpoint with numgen; ports without endpoints are
// rejected, as are other ports of allocated ClusterIPs; unallocated addresses of the
// service CIDR are dropped.
func RenderNFT(table, serviceCIDR string, ports []ServicePort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %[1]s {}\ndelete table ip %[1]s\ntable ip %[1]s {\n", table)
	var dispatch, noEndpoints, chains, clusterIPs []string
	seenIP := map[string]bool{}
	for i, sp := range ports {
		if !seenIP[sp.ClusterIP] {
			seenIP[sp.ClusterIP] = true
			clusterIPs = append(clusterIPs, sp.ClusterIP)
		}
		key := fmt.Sprintf("%s . %s . %d", sp.ClusterIP, sp.Protocol, sp.Port)
		if len(sp.Endpoints) == 0 {
			noEndpoints = append(noEndpoints, key)
			continue
		}
		svcChain := fmt.Sprintf("svc-%d", i)
		dispatch = append(dispatch, fmt.Sprintf("%s : goto %s", key, svcChain))
		var picks []string
		for j, ep := range sp.Endpoints {
			epChain := fmt.Sprintf("svc-%d-ep-%d", i, j)
			picks = append(picks, fmt.Sprintf("%d : goto %s", j, epChain))
			chains = append(chains, fmt.Sprintf("\tchain %s {\n\t\tip saddr %s meta mark set meta mark | %s\n\t\tmeta l4proto %s dnat to %s:%d\n\t}\n",
				epChain, ep.IP, hairpinMark, sp.Protocol, ep.IP, ep.Port))
		}
		chains = append(chains, fmt.Sprintf("\tchain %s {\n\t\tcomment %q\n\t\tnumgen random mod %d vmap { %s }\n\t}\n",
			svcChain, sp.Service, len(sp.Endpoints), strings.Join(picks, ", ")))
	}
	b.WriteString("\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n")
	if len(dispatch) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(dispatch, ", "))
	}
	b.WriteString("\t}\n\tset no-endpoints {\n\t\ttype ipv4_addr . inet_proto . inet_service\n")
	if len(noEndpoints) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(noEndpoints, ", "))
	}
	b.WriteString("\t}\n\tset cluster-ips {\n\t\ttype ipv4_addr\n")
	if len(clusterIPs) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(clusterIPs, ", "))
	}
	b.WriteString("\t}\n")
	for _, c := range chains {
		b.WriteString(c)
	}
	fmt.Fprintf(&b, `	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain nat-postrouting {
		type nat hook postrouting priority 100; policy accept;
		meta mark & %[1]s == %[1]s masquerade
	}
	chain filter-forward {
		type filter hook forward priority -10; policy accept;
		ct state new ip daddr . meta l4proto . th dport @no-endpoints reject
		ct state new ip daddr @cluster-ips reject
		ct state new ip daddr %[2]s drop
	}
	chain filter-output {
		type filter hook output priority -10; policy accept;
		ct state new ip daddr . meta l4proto . th dport @no-endpoints reject
		ct state new ip daddr @cluster-ips reject
		ct state new ip daddr %[2]s drop
	}
}
`, hairpinMark, serviceCIDR)
	return b.String()
}
