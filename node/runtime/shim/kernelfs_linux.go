package shim

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// What runtimes hide from an unprivileged container's /proc and /sys (containerd's
// defaults): masked (an empty file or directory over them) and read-only.
var (
	maskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap"}
	readOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// devices are the character devices of a container's own /dev (major, minor), as
// runtimes make them.
var devices = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

func procFD(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// mountKernelFS gives the container (root is its root, open) its /proc, /sys and /dev:
// a /proc of its own PID namespace with the paths runtimes hide masked or read-only, a
// read-only /sys of its network namespace, and a /dev of its own (the usual devices,
// pseudo-terminals of its own, its own shared memory). A privileged container gets the
// host's /sys, writable, the host's /dev, and nothing masked. It runs before the pivot:
// the host's /proc and /dev are still in view.
func mountKernelFS(root *os.File, privileged bool) error {
	// mountAt mounts at path in the container's root, made when missing.
	mountAt := func(path string, dir bool, source, fstype string, flags uintptr, data string) error {
		fd, err := makeTarget(root, path, dir)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Mount(source, procFD(fd), fstype, flags, data); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	// remount changes the flags of the mount at path.
	remount := func(path string, flags uintptr) error {
		fd, err := unix.Openat2(int(root.Fd()), path, inRoot)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Mount("", procFD(fd), "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
	}
	const hardened = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := mountAt("/proc", true, "proc", "proc", hardened, ""); err != nil {
		return err
	}
	if privileged {
		return errors.Join(mountAt("/sys", true, "/sys", "", unix.MS_BIND|unix.MS_REC, ""),
			mountAt("/dev", true, "/dev", "", unix.MS_BIND|unix.MS_REC, ""))
	}
	if err := mountAt("/sys", true, "sysfs", "sysfs", hardened|unix.MS_RDONLY, ""); err != nil {
		return err
	}
	if err := mountAt("/dev", true, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev, err := unix.Openat2(int(root.Fd()), "/dev", inRoot) // the new tmpfs
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, d := range devices {
		if err := unix.Mknodat(dev, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("/dev/%s: %w", d.name, err)
		}
		unix.Fchmodat(dev, d.name, 0o666, 0) // past the umask
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"} {
		if err := unix.Symlinkat(target, dev, name); err != nil {
			return fmt.Errorf("/dev/%s: %w", name, err)
		}
	}
	if err := errors.Join(mountAt("/dev/pts", true, "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
		mountAt("/dev/shm", true, "shm", "tmpfs", hardened, "mode=1777,size=65536k"),
		mountAt("/dev/mqueue", true, "mqueue", "mqueue", hardened, "")); err != nil {
		return err
	}
	for _, p := range maskedPaths {
		fd, err := unix.Openat2(int(root.Fd()), p, inRoot)
		if err != nil {
			continue // not on this kernel
		}
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", procFD(fd), "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = unix.Mount("/dev/null", procFD(fd), "", unix.MS_BIND, "")
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		fd, err := unix.Openat2(int(root.Fd()), p, inRoot)
		if err != nil {
			continue
		}
		err = unix.Mount(procFD(fd), procFD(fd), "", unix.MS_BIND|unix.MS_REC, "")
		unix.Close(fd)
		if err == nil {
			err = remount(p, unix.MS_RDONLY|hardened)
		}
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	return nil
}
