package shim

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames are the kernel's capabilities by number, as securityContext names them
// (without CAP_).
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// DefaultCaps is what a container gets unless its securityContext says otherwise:
// containerd's (and Docker's) default set.
var DefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// Capabilities is a container's capability set as containerd computes it: all of them
// for a privileged container, else the default set less drop, plus add ("ALL" in
// either means every one; names with or without CAP_, any case). It returns an error
// naming a capability the kernel does not know.
func Capabilities(add, drop []string, privileged bool) ([]string, error) {
	if privileged {
		return slices.Clone(capNames), nil
	}
	norm := func(names []string) ([]string, bool, error) {
		var out []string
		for _, n := range names {
			n = strings.TrimPrefix(strings.ToUpper(n), "CAP_")
			if n == "ALL" {
				return nil, true, nil
			}
			if !slices.Contains(capNames, n) {
				return nil, false, fmt.Errorf("unknown capability %q", n)
			}
			out = append(out, n)
		}
		return out, false, nil
	}
	caps := slices.Clone(DefaultCaps)
	dropped, dropAll, err := norm(drop)
	if err != nil {
		return nil, err
	}
	if dropAll {
		caps = []string{}
	}
	caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(dropped, c) })
	added, addAll, err := norm(add)
	if err != nil {
		return nil, err
	}
	if addAll {
		return slices.Clone(capNames), nil
	}
	for _, c := range added {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

// LimitCaps limits this thread, and what it starts, to caps (nil: the default set): every other capability
// leaves the bounding set, and the inheritable set becomes caps (a root program gets
// the bounding set; another user's program what its files grant). The thread keeps
// its own effective capabilities.
func LimitCaps(caps []string) error {
	if caps == nil {
		caps = DefaultCaps
	}
	var keep [2]uint32
	for i, name := range capNames {
		if slices.Contains(caps, name) {
			keep[i/32] |= 1 << (i % 32)
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("drop CAP_%s: %w", name, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for i := range data {
		data[i].Inheritable = keep[i] & data[i].Permitted
	}
	// The ambient set only shrinks with these (ambient ⊆ inheritable ∩ permitted).
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
