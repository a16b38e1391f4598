package sandbox

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// Pod traffic to addresses outside the pod CIDR leaves with the node's address, as a CNI
// plugin's ipMasq does; service traffic is the proxy's business. The rule lives in an
// nftables table of the node agent's own, replaced in one transaction.

func masqueradeTable(instance string) string { return instance + "_node" }

func (n *Network) masqueradeRules() string {
	t := masqueradeTable(n.instance)
	cidr := n.cidr.String()
	return fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr %[2]s ip daddr != %[2]s masquerade
	}
}
`, t, cidr)
}

// ensureMasquerade installs (or replaces) the masquerade rule.
func (n *Network) ensureMasquerade() error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(n.masqueradeRules())
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
