package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

const mountNSEnv = "MINICLUSTER_HOST_MOUNT_NS"

// enterHostMountNamespace re-executes the daemon in the mount namespace `ip netns exec`
// was started from, when it gave the daemon a private (slave) one. Pod netns are bind
// mounts under /run/netns: made in a slave namespace they would be invisible to
// `ip netns exec <pod>` and to the next daemon. Only the mount namespace changes; the
// network namespace, pid and arguments stay. It returns only if nothing had to be done.
func enterHostMountNamespace(log *slog.Logger) error {
	if os.Getenv(mountNSEnv) != "" {
		return nil
	}
	master := propagation("/proc/self/mountinfo", netnsMount, "master:")
	if master == "" {
		return nil // not a slave mount namespace: nothing to escape
	}
	target := masterMountNS(master)
	if target == "" {
		log.Warn("running in a private mount namespace and no process of its master is visible: pod netns will not be visible outside this daemon, nor to the next one")
		return nil
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("started in a private mount namespace (ip netns exec?) and nsenter (util-linux) is missing: pod network namespaces would be invisible outside")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{"nsenter", "--mount=" + target, "--", exe}, os.Args[1:]...)
	return syscall.Exec(nsenter, args, append(os.Environ(), mountNSEnv+"=1"))
}

// netnsMount is where named netns are bind-mounted; iproute2 makes it a shared mount.
const netnsMount = "/run/netns"

// masterMountNS finds a mount namespace whose /run/netns is in the peer group ours
// receives from: the parent's if it is there, else any visible process's.
func masterMountNS(group string) string {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	pids := []string{fmt.Sprint(os.Getppid())}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if c := e.Name()[0]; c >= '0' && c <= '9' {
			pids = append(pids, e.Name())
		}
	}
	for _, pid := range pids {
		ns, err := os.Readlink("/proc/" + pid + "/ns/mnt")
		if err != nil || ns == self {
			continue
		}
		if propagation("/proc/"+pid+"/mountinfo", netnsMount, "shared:") == group {
			return "/proc/" + pid + "/ns/mnt"
		}
	}
	return ""
}

// propagation returns the peer group id after kind ("shared:" or "master:") on the
// line of mountPoint in a mountinfo file.
func propagation(mountinfo, mountPoint, kind string) string {
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[4] != mountPoint {
			continue
		}
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if id, ok := strings.CutPrefix(opt, kind); ok {
				return id
			}
		}
	}
	return ""
}
