//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capMask is the capability bit mask of names, as /proc/PID/status shows it.
func capMask(names ...int) uint64 {
	var m uint64
	for _, n := range names {
		m |= 1 << n
	}
	return m
}

// dockerDefault is containerd's (and Docker's) default capability set.
var dockerDefault = capMask(unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER, unix.CAP_MKNOD,
	unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE)

// statusCaps reads the capability sets of a /proc/PID/status.
func statusCaps(t *testing.T, status string) map[string]uint64 {
	t.Helper()
	caps := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^(Cap\w+):\s+([0-9a-f]+)$`).FindAllStringSubmatch(status, -1) {
		v, _ := strconv.ParseUint(m[2], 16, 64)
		caps[m[1]] = v
	}
	if len(caps) != 5 {
		t.Fatalf("no capabilities in:\n%s", status)
	}
	return caps
}

// TestContainerIsolation: each container sees its own processes, a /dev of its own and
// a /proc with the kernel's sensitive files hidden, and has Docker's default
// capabilities unless its securityContext says otherwise; privileged containers get
// everything; commands run with kubectl exec are held to the same; containers of a pod
// with shareProcessNamespace see each other's processes.
func TestContainerIsolation(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	manifest := filepath.Join(t.TempDir(), "pods.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: iso}
spec:
  containers:
  - {name: plain, image: busybox, command: [sleep, "3600"]}
  - name: admin
    image: busybox
    command: [sleep, "3601"]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN], drop: [NET_RAW]}}
  - {name: priv, image: busybox, command: [sleep, "3602"], securityContext: {privileged: true}}
  - {name: nobody, image: busybox, command: [sleep, "3603"], securityContext: {runAsUser: 65534}}
---
apiVersion: v1
kind: Pod
metadata: {name: shared}
spec:
  shareProcessNamespace: true
  containers:
  - {name: a, image: busybox, command: [sleep, "3701"]}
  - {name: b, image: busybox, command: [sleep, "3702"]}
`), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod/iso", "pod/shared", "--timeout=60s")
	sh := func(pod, ctr, script string) (string, error) {
		out, errOut, err := n.exec("kubectl", "exec", pod, "-c", ctr, "--", "sh", "-c", script)
		return out + errOut, err
	}
	mustSh := func(pod, ctr, script string) string {
		t.Helper()
		out, err := sh(pod, ctr, script)
		if err != nil {
			t.Fatalf("%s/%s: %s: %v\n%s", pod, ctr, script, err, out)
		}
		return out
	}
	self, _ := os.ReadFile("/proc/self/status")
	hostBounding := statusCaps(t, string(self))["CapBnd"]

	// The program's own capabilities (its PID 2: the shim is the container's init) and an
	// exec'd command's.
	for _, c := range []struct {
		ctr                 string
		bounding, effective uint64
		noNewPrivs          string
	}{
		{"plain", dockerDefault, dockerDefault, "0"},
		{"admin", dockerDefault&^capMask(unix.CAP_NET_RAW) | capMask(unix.CAP_NET_ADMIN), dockerDefault&^capMask(unix.CAP_NET_RAW) | capMask(unix.CAP_NET_ADMIN), "1"},
		{"priv", hostBounding, hostBounding, "0"},
		{"nobody", dockerDefault, 0, "0"},
	} {
		for _, proc := range []string{"$(pidof busybox)", "self"} { // the program is the host's busybox
			status := mustSh("iso", c.ctr, "cat /proc/"+proc+"/status")
			caps := statusCaps(t, status)
			if caps["CapBnd"] != c.bounding || caps["CapEff"] != c.effective {
				t.Errorf("%s, /proc/%s: bounding %x effective %x, want %x %x", c.ctr, proc, caps["CapBnd"], caps["CapEff"], c.bounding, c.effective)
			}
			if !regexp.MustCompile(`(?m)^NoNewPrivs:\s+` + c.noNewPrivs + `$`).MatchString(status) {
				t.Errorf("%s, /proc/%s: want NoNewPrivs %s:\n%s", c.ctr, proc, c.noNewPrivs, status)
			}
		}
	}

	// Its own processes only: its init (the shim), its program, and the exec'd ps.
	ps := mustSh("iso", "plain", "exec ps -o pid,args")
	if !strings.Contains(ps, "sleep 3600") || strings.Contains(ps, "sleep 3601") || strings.Count(strings.TrimSpace(ps), "\n") != 3 {
		t.Errorf("processes seen by container plain:\n%s", ps)
	}
	if got := strings.TrimSpace(mustSh("iso", "plain", "cat /proc/1/cmdline | tr '\\0' ' '")); !strings.Contains(got, "shim") {
		t.Errorf("PID 1 of container plain is %q, want its shim", got)
	}
	// A /dev of its own (with the kubelet's termination-log); the host's for the privileged one.
	if devs := strings.Fields(mustSh("iso", "plain", "ls /dev")); strings.Join(devs, " ") != "core fd full mqueue null ptmx pts random shm stderr stdin stdout termination-log tty urandom zero" {
		t.Errorf("/dev of container plain: %v", devs)
	}
	mustSh("iso", "plain", "echo x > /dev/null && head -c 4 /dev/urandom | wc -c | grep -qx 4")
	if _, err := os.Stat("/dev/kmsg"); err == nil {
		mustSh("iso", "priv", "test -c /dev/kmsg")
	}
	// No mounts, no writes to the kernel's settings, no way back to the data dir.
	for _, script := range []string{
		"mount -t tmpfs x /mnt",
		"echo 1 > /proc/sys/vm/drop_caches",
		"umount " + n.dataDir + " ; cat " + n.dataDir + "/token",
		"umount /tmp ; ls " + n.dataDir + "/token",
	} {
		if out, err := sh("iso", "plain", script); err == nil {
			t.Errorf("container plain: %q succeeded:\n%s", script, out)
		}
	}
	mustSh("iso", "priv", "mount -t tmpfs x /mnt && umount /mnt")

	// shareProcessNamespace: one PID namespace for the pod, its init the pause process.
	eventually(t, 10*time.Second, func() error {
		ps := mustSh("shared", "a", "ps -o pid,args")
		if !strings.Contains(ps, "sleep 3701") || !strings.Contains(ps, "sleep 3702") || !strings.Contains(ps, "pause") {
			return fmt.Errorf("processes seen by container a of pod shared:\n%s", ps)
		}
		return nil
	})
}
