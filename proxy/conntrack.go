package proxy

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// StaleFlow selects conntrack entries to a service address (Dst:Port in Protocol; Dst
// empty for a NodePort on any node address) that must go. With Endpoint set they are the
// ones answered by that endpoint, which no longer serves the port; with Endpoint empty
// they are the ones never translated, refused while the port had no endpoints.
type StaleFlow struct {
	Protocol string // tcp, udp, sctp
	Dst      string
	Port     int32
	Endpoint string
}

// Stale lists the flows that conntrack would keep on a wrong path after a service's
// ports change from old to next:
//   - UDP flows whose endpoint left the port. Without deleting them a UDP client that
//     keeps its source port (a resolver, say) stays stuck on a dead pod.
//   - flows of any protocol that were refused while the port had no endpoints, once it
//     has some. The refusal leaves an unreplied entry without translation for minutes,
//     and a client that reuses the source port (a busy client runs through the
//     ephemeral range in seconds) matches it, skips the DNAT and is refused again.
func Stale(old, next []ServicePort) []StaleFlow {
	key := func(sp ServicePort) string { return sp.Name + "/" + sp.Protocol }
	before := map[string]ServicePort{}
	for _, sp := range old {
		before[key(sp)] = sp
	}
	serving := map[string]map[string]bool{}
	var out []StaleFlow
	for _, sp := range next {
		m := map[string]bool{}
		for _, e := range append(append([]Endpoint{}, sp.Internal...), sp.External...) {
			m[e.IP] = true
		}
		serving[key(sp)] = m
		if was, ok := before[key(sp)]; sp.HasEndpoints && (!ok || !was.HasEndpoints) {
			out = append(out, sp.flows("")...)
		}
	}
	for _, sp := range old {
		if sp.Protocol != "udp" {
			continue
		}
		done := map[string]bool{}
		for _, e := range append(append([]Endpoint{}, sp.Internal...), sp.External...) {
			if serving[key(sp)][e.IP] || done[e.IP] {
				continue
			}
			done[e.IP] = true
			out = append(out, sp.flows(e.IP)...)
		}
	}
	return out
}

// flows lists the port's addresses (cluster IP, external IPs, node port) as flows
// answered by endpoint.
func (sp ServicePort) flows(endpoint string) []StaleFlow {
	out := []StaleFlow{{Protocol: sp.Protocol, Dst: sp.ClusterIP, Port: sp.Port, Endpoint: endpoint}}
	for _, ip := range sp.ExternalIPs {
		out = append(out, StaleFlow{Protocol: sp.Protocol, Dst: ip, Port: sp.Port, Endpoint: endpoint})
	}
	if sp.NodePort != 0 {
		out = append(out, StaleFlow{Protocol: sp.Protocol, Port: sp.NodePort, Endpoint: endpoint})
	}
	return out
}

var protocols = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

type flowKey struct {
	proto uint8
	dst   string // "" for any address
	port  uint16
}

// flowFilter matches conntrack entries against a set of stale flows in one pass over
// the table.
type flowFilter map[flowKey]map[string]bool // endpoint, "" for untranslated

func (f flowFilter) MatchConntrackFlow(c *netlink.ConntrackFlow) bool {
	for _, dst := range []string{c.Forward.DstIP.String(), ""} {
		eps := f[flowKey{c.Forward.Protocol, dst, c.Forward.DstPort}]
		if eps == nil {
			continue
		}
		if eps[c.Reverse.SrcIP.String()] || eps[""] && c.Reverse.SrcIP.Equal(c.Forward.DstIP) {
			return true
		}
	}
	return false
}

// deleteConntrack deletes the flows through netlink.
func deleteConntrack(flows []StaleFlow) error {
	f := flowFilter{}
	for _, fl := range flows {
		proto, ok := protocols[fl.Protocol]
		if !ok {
			return fmt.Errorf("conntrack: unknown protocol %q", fl.Protocol)
		}
		k := flowKey{proto, fl.Dst, uint16(fl.Port)}
		if fl.Dst != "" {
			k.dst = net.ParseIP(fl.Dst).String()
		}
		if f[k] == nil {
			f[k] = map[string]bool{}
		}
		f[k][fl.Endpoint] = true
	}
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
	return err
}
