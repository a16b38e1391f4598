//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkContainerStart is the measurement behind the runtime choice
// (docs/architecture.md, "The container runtime"): the time from asking for a
// container to its program running, and the memory that stays per container, for
// minicluster's shim and for Debian's runc, side by side in one run, on the same root
// filesystem (the host's busybox and its libraries) in the same network namespace.
// Each container gets the same writable layer over the image (an overlay, which
// containerd mounts before it calls runc), its own mount, UTS and PID namespaces.
// runc also makes a cgroup per container (it cannot not), the shim only for containers
// with limits. runc leaves no process beside the container (containerd's shim would
// be its parent and hold its stdio); the shim is that process.
//
//	go test -tags integration -run '^$' -bench ContainerStart -benchtime 50x ./integration/
func BenchmarkContainerStart(b *testing.B) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("no runc (apt-get install runc)")
	}
	n := newNode(b) // a network namespace of the test's; no daemon
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	hostBusybox(b, rootfs)
	shimBin := filepath.Join(filepath.Dir(binary), "minicluster-shim")

	overlay := func(at string) string {
		fs, upper, work := at+"/fs", at+"/upper", at+"/work"
		for _, d := range []string{fs, upper, work} {
			os.MkdirAll(d, 0o755)
		}
		if err := unix.Mount("overlay", fs, "overlay", 0, "lowerdir="+rootfs+",upperdir="+upper+",workdir="+work); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
		return fs
	}
	pss := func(pid int) int {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		m := regexp.MustCompile(`(?m)^Pss:\s+(\d+) kB`).FindSubmatch(data)
		if m == nil {
			return 0
		}
		kb, _ := strconv.Atoi(string(m[1]))
		return kb
	}

	// The shim, started as the agent starts it: from a thread in the pod's netns, in new
	// mount, UTS and PID namespaces, returning when the shim says the program runs.
	shimStart := func(i int) (time.Duration, int, func()) {
		at := filepath.Join(dir, fmt.Sprint("shim-", i))
		os.MkdirAll(at+"/root", 0o700)
		spec := map[string]any{"argv": []string{"/bin/sleep", "3600"}, "env": []string{"PATH=/bin"}, "hostname": "c",
			"root": at + "/root", "image": rootfs, "exitFile": at + "/exit.json", "started": 3}
		data, _ := json.Marshal(spec)
		os.WriteFile(at+"/spec.json", data, 0o600)
		r, w, _ := os.Pipe()
		defer r.Close()
		cmd := exec.Command(shimBin, at+"/spec.json")
		cmd.ExtraFiles = []*os.File{w}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID}
		start := time.Now()
		var err error
		n.inNetns(b, func() { err = cmd.Start() })
		if err != nil {
			b.Fatal(err)
		}
		w.Close()
		if _, err := r.Read(make([]byte, 1)); err != nil {
			b.Fatalf("shim did not start its program: %v", err)
		}
		took := time.Since(start)
		return took, pss(cmd.Process.Pid), func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }
	}

	// runc, given a bundle as containerd gives it: config.json from `runc spec`, the
	// root an overlay, the pod's netns by path; `runc run -d` returns once the program
	// runs.
	template := filepath.Join(dir, "template")
	os.MkdirAll(template, 0o755)
	if out, err := exec.Command(runc, "spec", "-b", template).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	var config map[string]any
	data, _ := os.ReadFile(template + "/config.json")
	json.Unmarshal(data, &config)
	config["process"].(map[string]any)["terminal"] = false
	config["process"].(map[string]any)["args"] = []string{"/bin/sleep", "3600"}
	linux := config["linux"].(map[string]any)
	var nss []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] == "network" {
			ns = map[string]any{"type": "network", "path": "/run/netns/" + n.netns}
		}
		nss = append(nss, ns)
	}
	linux["namespaces"] = nss
	runcState := filepath.Join(dir, "runc-state")
	prefix := "mcbench-" + n.instance + "-"
	runcStart := func(i int) (time.Duration, int, func()) {
		bundle := filepath.Join(dir, fmt.Sprint("runc-", i))
		os.MkdirAll(bundle, 0o755)
		config["root"] = map[string]any{"path": overlay(bundle)}
		data, _ := json.Marshal(config)
		os.WriteFile(bundle+"/config.json", data, 0o644)
		id := fmt.Sprint(prefix, i)
		devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		defer devnull.Close()
		cmd := exec.Command(runc, "--root", runcState, "run", "-d", "-b", bundle, id)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
		start := time.Now()
		if err := cmd.Run(); err != nil {
			out, _ := exec.Command(runc, "--root", runcState, "run", "-d", "-b", bundle, id+"x").CombinedOutput()
			b.Fatalf("runc run: %v %s", err, out)
		}
		took := time.Since(start)
		return took, 0, func() {
			exec.Command(runc, "--root", runcState, "delete", "-f", id).Run()
		}
	}
	b.Cleanup(func() { // also when the benchmark fails half-way
		out, _ := exec.Command(runc, "--root", runcState, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			exec.Command(runc, "--root", runcState, "delete", "-f", id).Run()
		}
	})

	var shimTimes, runcTimes []time.Duration
	var shimPss int
	var stops []func()
	b.ResetTimer()
	for i := 0; i < b.N; i++ { // interleaved, so both see the same machine
		d, kb, stop := shimStart(i)
		shimTimes, shimPss, stops = append(shimTimes, d), shimPss+kb, append(stops, stop)
		d, _, stop = runcStart(i)
		runcTimes, stops = append(runcTimes, d), append(stops, stop)
	}
	b.StopTimer()
	for _, stop := range stops {
		stop()
	}
	b.ReportMetric(float64(percentile(shimTimes, 0.5).Microseconds())/1000, "shim-p50-ms")
	b.ReportMetric(float64(percentile(runcTimes, 0.5).Microseconds())/1000, "runc-p50-ms")
	b.ReportMetric(float64(percentile(shimTimes, 0.99).Microseconds())/1000, "shim-p99-ms")
	b.ReportMetric(float64(percentile(runcTimes, 0.99).Microseconds())/1000, "runc-p99-ms")
	b.ReportMetric(float64(shimPss)/float64(b.N)/1024, "shim-MiB/ctr")
}

// hostBusybox makes a root filesystem at dir of the host's busybox and the libraries
// it links.
func hostBusybox(t testing.TB, dir string) {
	for name, data := range hostBusyboxFiles(t) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, applet := range []string{"sh", "sleep", "ls", "cat", "ps"} {
		os.Symlink("busybox", dir+"/bin/"+applet)
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc"} {
		os.MkdirAll(dir+"/"+d, 0o755)
	}
}
