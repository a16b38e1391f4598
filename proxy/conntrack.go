package proxy

import (
	"errors"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// StaleFlow selects UDP conntrack entries to a service (Dst:Port; Dst empty for a
// NodePort on any node address) that were answered by Endpoint, which no longer serves.
type StaleFlow struct {
	Dst      string
	Port     int32
	Endpoint string
}

// StaleUDP lists the flows whose endpoint left a UDP service port between old and next.
// Without deleting them a UDP client that keeps its source port (a resolver, say) stays
// stuck on a dead pod, as conntrack keeps sending it there.
func StaleUDP(old, next []ServicePort) []StaleFlow {
	serving := map[string]map[string]bool{}
	for _, sp := range next {
		if sp.Protocol != "udp" {
			continue
		}
		m := map[string]bool{}
		for _, e := range append(append([]Endpoint{}, sp.Internal...), sp.External...) {
			m[e.IP] = true
		}
		serving[sp.Name] = m
	}
	var out []StaleFlow
	for _, sp := range old {
		if sp.Protocol != "udp" {
			continue
		}
		done := map[string]bool{}
		for _, e := range append(append([]Endpoint{}, sp.Internal...), sp.External...) {
			if serving[sp.Name][e.IP] || done[e.IP] {
				continue
			}
			done[e.IP] = true
			out = append(out, StaleFlow{Dst: sp.ClusterIP, Port: sp.Port, Endpoint: e.IP})
			for _, ip := range sp.ExternalIPs {
				out = append(out, StaleFlow{Dst: ip, Port: sp.Port, Endpoint: e.IP})
			}
			if sp.NodePort != 0 {
				out = append(out, StaleFlow{Port: sp.NodePort, Endpoint: e.IP})
			}
		}
	}
	return out
}

// deleteConntrack deletes the flows through netlink.
func deleteConntrack(flows []StaleFlow) error {
	var filters []netlink.CustomConntrackFilter
	for _, f := range flows {
		ff := &netlink.ConntrackFilter{}
		errs := []error{ff.AddProtocol(unix.IPPROTO_UDP), ff.AddPort(netlink.ConntrackOrigDstPort, uint16(f.Port)),
			ff.AddIP(netlink.ConntrackReplySrcIP, net.ParseIP(f.Endpoint))}
		if f.Dst != "" {
			errs = append(errs, ff.AddIP(netlink.ConntrackOrigDstIP, net.ParseIP(f.Dst)))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		filters = append(filters, ff)
	}
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	return err
}
