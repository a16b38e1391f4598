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

// enterHostMountNamespace re-executes the daemon in the mount namespace of the process
// that started it when `ip netns exec` gave it a private one. Pod netns are bind mounts
// under /run/netns: made in ip's private (slave) mount namespace they would be
// invisible to `ip netns exec <pod>` and to the next daemon. Only the mount namespace
// changes; the network namespace, pid and arguments stay. It returns only if nothing
// had to be done.
func enterHostMountNamespace(log *slog.Logger) error {
	if os.Getenv(mountNSEnv) != "" {
		return nil
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil
	}
	var parent string
	for _, candidate := range []string{fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()), "/proc/1/ns/mnt"} {
		if host, err := os.Readlink(candidate); err == nil {
			if host == self {
				return nil
			}
			parent = candidate
			break
		}
	}
	if parent == "" {
		if isSlaveRoot() {
			log.Warn("running in a private mount namespace whose creator is gone: pod netns will not be visible outside this daemon, nor to the next one")
		}
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
	args := append([]string{"nsenter", "--mount=" + parent, "--", exe}, os.Args[1:]...)
	return syscall.Exec(nsenter, args, append(os.Environ(), mountNSEnv+"=1"))
}

// isSlaveRoot reports whether / is a slave mount, as in `ip netns exec`.
func isSlaveRoot() bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == "/" {
			return strings.Contains(line, "master:")
		}
	}
	return false
}
