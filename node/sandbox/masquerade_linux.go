package sandbox

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
)

// Pod traffic to addresses outside the pod CIDR leaves with the node's address, as a CNI
// plugin's ipMasq does; service traffic is the proxy's business. Pods' hostPorts are
// forwarded from the node's addresses, as the portmap CNI plugin does. The rules live
// in an nftables table of the node agent's own, replaced in one transaction.

func masqueradeTable(instance string) string { return instance + "_node" }

// HostPort is a port of the node forwarded to a pod.
type HostPort struct {
	Protocol string // tcp, udp or sctp
	Port     uint16
	// HostIP, when valid, is the one node address it is forwarded from (else all).
	HostIP  netip.Addr
	PodIP   netip.Addr
	PodPort uint16
}

func (n *Network) nodeRules(ports []HostPort) string {
	t := masqueradeTable(n.instance)
	cidr := n.cidr.String()
	var fwd strings.Builder
	for _, p := range ports {
		dst := ""
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			dst = "ip daddr " + p.HostIP.String() + " "
		}
		fmt.Fprintf(&fwd, "\t\t%s%s dport %d dnat to %s:%d\n", dst, p.Protocol, p.Port, p.PodIP, p.PodPort)
	}
	return fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	chain hostports {
%[3]s	}
	chain prerouting {
		type nat hook prerouting priority -110; policy accept;
		fib daddr type local jump hostports
	}
	chain output {
		type nat hook output priority -110; policy accept;
		fib daddr type local jump hostports
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr %[2]s ip daddr != %[2]s masquerade
	}
}
`, t, cidr, fwd.String())
}

// SetHostPorts forwards exactly ports from the node to their pods.
func (n *Network) SetHostPorts(ports []HostPort) error {
	ports = slices.Clone(ports)
	slices.SortFunc(ports, func(a, b HostPort) int {
		return strings.Compare(fmt.Sprint(a.Protocol, a.Port, a.HostIP), fmt.Sprint(b.Protocol, b.Port, b.HostIP))
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.Equal(ports, n.hostPorts) {
		return nil
	}
	if err := n.applyNodeRules(ports); err != nil {
		return err
	}
	n.hostPorts = ports
	return nil
}

// ensureMasquerade installs (or replaces) the node's rules.
func (n *Network) ensureMasquerade() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applyNodeRules(n.hostPorts)
}

func (n *Network) applyNodeRules(ports []HostPort) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(n.nodeRules(ports))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// removeMasquerade deletes the table; it is fine if it is not there.
func removeMasquerade(instance string) {
	exec.Command("nft", "delete", "table", "ip", masqueradeTable(instance)).Run()
}
