package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Containers' resources are enforced with cgroups, as the kubelet does through its
// runtime (only containers with limits or CPU requests get one): a memory limit (the kernel's OOM killer ends a container over it, reported
// OOMKilled), a CPU limit (CFS quota) and CPU requests (weight). Each container has a
// cgroup minicluster/<pod uid>/<container> under the hierarchy's root: cgroup v2 when
// the host has it unified, else the v1 memory and cpu controllers. Without them, limits
// are not enforced (and the node says so in its log).

const cgroupRoot = "/sys/fs/cgroup"

// limited reports whether a container has limits or CPU requests to enforce.
func limited(res corev1.ResourceRequirements) bool {
	_, mem := res.Limits[corev1.ResourceMemory]
	_, cpu := res.Limits[corev1.ResourceCPU]
	_, req := res.Requests[corev1.ResourceCPU]
	return mem || cpu || req
}

// cgroups finds the controllers: v2's one directory, or v1's memory and cpu ones.
type cgroups struct {
	v2          bool
	memory, cpu string // the hierarchies' roots (v2: both cgroupRoot)
}

func detectCgroups() *cgroups {
	if data, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		c := &cgroups{v2: true}
		if strings.Contains(string(data), "memory") {
			c.memory = cgroupRoot
		}
		if strings.Contains(string(data), "cpu") {
			c.cpu = cgroupRoot
		}
		return c
	}
	c := &cgroups{}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "memory", "memory.limit_in_bytes")); err == nil {
		c.memory = filepath.Join(cgroupRoot, "memory")
	}
	for _, d := range []string{"cpu", "cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, d, "cpu.cfs_quota_us")); err == nil {
			c.cpu = filepath.Join(cgroupRoot, d)
			break
		}
	}
	return c
}

func podCgroup(uid string) string { return filepath.Join("minicluster", uid) }

// dirs are a container's cgroup directories, one per hierarchy in use.
func (c *cgroups) dirs(uid, name string) []string {
	var out []string
	for _, root := range []string{c.memory, c.cpu} {
		if root != "" && !slices.Contains(out, filepath.Join(root, podCgroup(uid), name)) {
			out = append(out, filepath.Join(root, podCgroup(uid), name))
		}
	}
	return out
}

// setup makes a container's cgroups with its limits and returns their directories (the
// shim joins them).
func (c *cgroups) setup(uid, name string, res corev1.ResourceRequirements) ([]string, error) {
	if c.v2 {
		// Controllers are handed down from the root: root → minicluster → pod.
		for _, dir := range []string{cgroupRoot, filepath.Join(cgroupRoot, "minicluster"), filepath.Join(cgroupRoot, podCgroup(uid))} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			for _, ctl := range []string{"memory", "cpu"} {
				if (ctl == "memory" && c.memory != "") || (ctl == "cpu" && c.cpu != "") {
					os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+ctl), 0)
				}
			}
		}
	}
	dirs := c.dirs(uid, name)
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	write := func(root, file, value string) error {
		if root == "" {
			return nil
		}
		err := os.WriteFile(filepath.Join(root, podCgroup(uid), name, file), []byte(value), 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup %s: %w", file, err)
		}
		return nil
	}
	var errs []error
	if mem, ok := res.Limits[corev1.ResourceMemory]; ok && mem.Value() > 0 {
		v := strconv.FormatInt(mem.Value(), 10)
		if c.v2 {
			// The whole container goes when one of its processes is OOM-killed, as the kubelet sets it.
			errs = append(errs, write(c.memory, "memory.max", v), write(c.memory, "memory.swap.max", "0"), write(c.memory, "memory.oom.group", "1"))
		} else {
			errs = append(errs, write(c.memory, "memory.limit_in_bytes", v), write(c.memory, "memory.memsw.limit_in_bytes", v))
		}
	}
	if cpu, ok := res.Limits[corev1.ResourceCPU]; ok && cpu.MilliValue() > 0 {
		quota := strconv.FormatInt(max(cpu.MilliValue()*100, 1000), 10) // per 100 ms period
		if c.v2 {
			errs = append(errs, write(c.cpu, "cpu.max", quota+" 100000"))
		} else {
			errs = append(errs, write(c.cpu, "cpu.cfs_period_us", "100000"), write(c.cpu, "cpu.cfs_quota_us", quota))
		}
	}
	if cpu, ok := res.Requests[corev1.ResourceCPU]; ok && cpu.MilliValue() > 0 {
		shares := max(cpu.MilliValue()*1024/1000, 2)
		if c.v2 {
			// The kubelet's conversion of shares to weight.
			errs = append(errs, write(c.cpu, "cpu.weight", strconv.FormatInt(1+((shares-2)*9999)/262142, 10)))
		} else {
			errs = append(errs, write(c.cpu, "cpu.shares", strconv.FormatInt(shares, 10)))
		}
	}
	return dirs, errors.Join(errs...)
}

// oomKilled reports whether the kernel's OOM killer ended a process of the container.
func (c *cgroups) oomKilled(uid, name string) bool {
	if c.memory == "" {
		return false
	}
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(c.memory, podCgroup(uid), name, file))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" && v != "0" {
			return true
		}
	}
	return false
}

// remove deletes a pod's cgroups (their processes gone); what cannot go yet stays.
func (c *cgroups) remove(uid string) {
	for _, root := range []string{c.memory, c.cpu} {
		if root == "" {
			continue
		}
		dir := filepath.Join(root, podCgroup(uid))
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		os.Remove(dir)
	}
}
