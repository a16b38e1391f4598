//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A container over its memory limit is OOM-killed and restarted, reported with reason
// OOMKilled; a CPU limit becomes a CFS quota; the QoS class is in the pod's status.
func TestResourceLimits(t *testing.T) {
	v2 := false
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		v2 = true
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("no cgroup memory controller on this machine")
	}
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "hog", "--image=busybox", "--overrides",
		`{"spec":{"containers":[{"name":"hog","image":"busybox","command":["dd","if=/dev/zero","of=/dev/null","bs=100M","count=1"],`+
			`"resources":{"limits":{"memory":"50Mi","cpu":"250m"}}}]}}`)
	kubectl("run", "burst", "--image=busybox", "--overrides",
		`{"spec":{"containers":[{"name":"burst","image":"busybox","command":["sleep","3600"],"resources":{"requests":{"cpu":"100m"}}}]}}`)
	eventually(t, 60*time.Second, func() error {
		got := kubectl("get", "pod", "hog", "-o", `jsonpath={.status.containerStatuses[0].lastState.terminated.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.containerStatuses[0].restartCount}`)
		if !strings.HasPrefix(got, "OOMKilled/137/") || strings.HasSuffix(got, "/0") {
			return fmt.Errorf("hog: %s", got)
		}
		return nil
	})
	for pod, want := range map[string]string{"hog": "Guaranteed", "burst": "Burstable"} {
		if got := kubectl("get", "pod", pod, "-o", "jsonpath={.status.qosClass}"); got != want {
			t.Errorf("%s: qosClass %q, want %s", pod, got, want)
		}
	}
	uid := kubectl("get", "pod", "hog", "-o", "jsonpath={.metadata.uid}")
	file, want := filepath.Join("/sys/fs/cgroup/cpu/minicluster", uid, "hog", "cpu.cfs_quota_us"), "25000\n"
	if v2 {
		file, want = filepath.Join("/sys/fs/cgroup/minicluster", uid, "hog", "cpu.max"), "25000 100000\n"
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != want {
		t.Errorf("%s: %q %v, want %q", file, got, err, want)
	}
	// The pod's cgroups go with it.
	kubectl("delete", "pod", "hog", "burst", "--grace-period=1")
	for _, root := range []string{"/sys/fs/cgroup/minicluster", "/sys/fs/cgroup/memory/minicluster", "/sys/fs/cgroup/cpu/minicluster"} {
		if _, err := os.Stat(filepath.Join(root, uid)); err == nil {
			t.Errorf("%s outlived the pod", filepath.Join(root, uid))
		}
	}
}
