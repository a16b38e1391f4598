package node

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// resolvConf is a parsed or rendered resolv.conf.
type resolvConf struct {
	nameservers, searches, options []string
}

func parseResolvConf(text string) resolvConf {
	var rc resolvConf
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			rc.nameservers = append(rc.nameservers, f[1])
		case "search", "domain":
			rc.searches = f[1:]
		case "options":
			rc.options = append(rc.options, f[1:]...)
		}
	}
	return rc
}

func (rc resolvConf) String() string {
	var b strings.Builder
	for _, ns := range rc.nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(rc.searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.searches, " "))
	}
	if len(rc.options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.options, " "))
	}
	return b.String()
}

// podResolvConf renders a pod's resolv.conf as the kubelet does for its dnsPolicy:
// ClusterFirst points at the cluster DNS with the namespace search path and ndots:5;
// Default copies the node's; None starts empty; dnsConfig is merged on top.
func podResolvConf(pod *corev1.Pod, clusterDNS netip.Addr, domain string, host resolvConf) resolvConf {
	var rc resolvConf
	policy := pod.Spec.DNSPolicy
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault // as the kubelet: a host-network pod asks for the cluster with ClusterFirstWithHostNet
	}
	switch policy {
	case corev1.DNSNone:
	case corev1.DNSDefault:
		rc = host
	default: // ClusterFirst, ClusterFirstWithHostNet
		rc = resolvConf{nameservers: []string{clusterDNS.String()},
			searches: append([]string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}, host.searches...),
			options:  []string{"ndots:5"}}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		rc.nameservers = append(rc.nameservers, c.Nameservers...)
		rc.searches = append(rc.searches, c.Searches...)
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			rc.options = mergeOption(rc.options, o.Name, opt)
		}
	}
	rc.nameservers = dedupe(rc.nameservers, 3)
	rc.searches = dedupe(rc.searches, 32)
	return rc
}

func mergeOption(opts []string, name, opt string) []string {
	out := opts[:0:0]
	for _, o := range opts {
		if n, _, _ := strings.Cut(o, ":"); n != name {
			out = append(out, o)
		}
	}
	return append(out, opt)
}

func dedupe(list []string, limit int) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] && len(out) < limit {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
