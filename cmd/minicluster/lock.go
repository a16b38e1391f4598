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

// lockInstance takes the instance's lock for as long as the process lives, or says
// which daemon holds it.
func lockInstance(instance, dataDir string) (*os.File, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock instance %s: %w", instance, err)
	}
	path := filepath.Join(lockDir, instance+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock instance %s: %w", instance, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("instance %q is in use by another minicluster daemon (%s); stop it or choose another --instance",
				instance, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock instance %s: %w", instance, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d, data dir %s\n", os.Getpid(), dataDir)
	return f, nil
}
