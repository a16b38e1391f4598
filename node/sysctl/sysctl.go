// Package sysctl knows pods' sysctls as Kubernetes does: valid names (the API's
// validation), the kernel namespace each belongs to (component-helpers'
// node/util/sysctl) and the safe ones a kubelet allows by default (its
// pkg/kubelet/sysctl), so that only sysctls of a pod's own namespaces are ever set.
package sysctl

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MaxLength and the segment format are the API's (pkg/apis/core/validation).
const (
	MaxLength  = 253
	segmentFmt = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
)

// NameRegexp is what a sysctl name must match ('.' or '/' between segments).
var NameRegexp = regexp.MustCompile("^(" + segmentFmt + "[\\./])*" + segmentFmt + "$")

// ValidName reports whether name is a valid sysctl name.
func ValidName(name string) bool { return len(name) <= MaxLength && NameRegexp.MatchString(name) }

// Normalize gives a name with '/' separators its '.' form, as the kubelet does
// (kernel/shm_rmid_forced is kernel.shm_rmid_forced; a '.' inside a segment becomes '/').
func Normalize(name string) string {
	i := strings.IndexAny(name, "./")
	if i < 0 || name[i] == '.' {
		return name
	}
	return swap(name)
}

// Path is where a sysctl is under /proc/sys.
func Path(name string) string { return "/proc/sys/" + swap(Normalize(name)) }

// swap exchanges '.' and '/'.
func swap(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// Namespace is the kernel namespace a sysctl belongs to.
type Namespace string

const (
	IPC     Namespace = "IPC"
	Net     Namespace = "Net"
	Unknown Namespace = ""
)

// NamespaceOf is the namespace of a sysctl (Unknown: the node's, never set for a pod).
func NamespaceOf(name string) Namespace {
	name = Normalize(name)
	switch {
	case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"), strings.HasPrefix(name, "fs.mqueue."):
		return IPC
	case strings.HasPrefix(name, "net."):
		return Net
	}
	return Unknown
}

// safe are the kubelet's safe sysctls (SafeSysctlAllowlist), allowed without
// --allowed-unsafe-sysctls; the kernels that namespace the newer ones (4.15 at most)
// are long the norm.
var safe = []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}

// Forbidden says why the kubelet's sysctl admission would refuse a pod's sysctl (nil:
// allowed), in its words.
func Forbidden(name string, hostNetwork, hostIPC bool) error {
	name = Normalize(name)
	if !slices.Contains(safe, name) {
		return fmt.Errorf("%q not allowlisted", name)
	}
	switch ns := NamespaceOf(name); {
	case ns == IPC && hostIPC, ns == Net && hostNetwork:
		return fmt.Errorf("%q not allowed with host %s enabled", name, ns)
	}
	return nil
}
