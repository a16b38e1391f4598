package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir holds one lock file per instance: the kernel objects an instance owns (its
// bridge, pod netns, rules) are named after it, so two daemons of one instance would
// remove each other's (issue 19: a second daemon deleted the first one's 74 pod networks).
var lockDir = "/run/minicluster"

// daemonLocks are the locks a daemon holds for as long as it runs.
type daemonLocks []*os.File

func (l daemonLocks) Close() {
	for _, f := range l {
		f.Close()
	}
}

// lockDaemon takes the instance's lock and the data dir's, or says which daemon holds
// one: a second daemon of an instance would remove the first one's pod networks, and a
// second daemon on a data dir would wait on its database.
func lockDaemon(instance, dataDir string) (daemonLocks, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock instance %s: %w", instance, err)
	}
	holder := fmt.Sprintf("pid %d, instance %s, data dir %s\n", os.Getpid(), instance, dataDir)
	inst, err := lockFile(filepath.Join(lockDir, instance+".lock"), holder)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("instance %q is in use by another minicluster daemon (%w); stop it or choose another --instance", instance, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock instance %s: %w", instance, err)
	}
	dir, err := lockFile(filepath.Join(dataDir, "daemon.lock"), holder)
	if errors.Is(err, unix.EWOULDBLOCK) {
		inst.Close()
		return nil, fmt.Errorf("data dir %s is in use by another minicluster daemon (%w); stop it or choose another --data-dir", dataDir, err)
	}
	if err != nil {
		inst.Close()
		return nil, fmt.Errorf("lock data dir %s: %w", dataDir, err)
	}
	return daemonLocks{inst, dir}, nil
}

// heldBy is a lock taken by another process, with what that process wrote into it.
type heldBy string

func (h heldBy) Error() string        { return string(h) }
func (h heldBy) Is(target error) bool { return target == unix.EWOULDBLOCK }

// lockFile takes an exclusive flock on path and writes holder into it, or returns a
// heldBy naming the process that holds it.
func lockFile(path, holder string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			return nil, heldBy(strings.TrimSpace(string(b)))
		}
		return nil, err
	}
	f.Truncate(0)
	f.WriteString(holder)
	return f, nil
}

// removeLock removes a lock file no daemon holds (cleanup: nothing of the instance is
// left, its lock file neither).
func removeLock(path string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		os.Remove(path)
	}
}
