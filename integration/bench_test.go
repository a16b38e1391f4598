//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// podWatch reports when each pod (by name) is first seen Running with an IP.
func (n *node) podWatch(b testing.TB) (<-chan string, func()) {
	req, _ := http.NewRequest("GET", "http://x/api/v1/namespaces/default/pods?watch=true", nil)
	resp, err := (&http.Client{Transport: n.socketClient().Transport}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan string, 10000)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		seen := map[string]bool{}
		for sc.Scan() {
			var ev struct {
				Object struct {
					Metadata struct{ Name string }
					Status   struct{ Phase, PodIP string }
				}
			}
			json.Unmarshal(sc.Bytes(), &ev)
			o := ev.Object
			if o.Status.Phase == "Running" && o.Status.PodIP != "" && !seen[o.Metadata.Name] {
				seen[o.Metadata.Name] = true
				out <- o.Metadata.Name
			}
		}
	}()
	return out, func() { resp.Body.Close() }
}

func (n *node) createPod(b testing.TB, name string) {
	n.createPodOf(b, name, `{"name":"c","image":"registry.k8s.io/pause:3.10"}`)
}

// createPodOf creates a pod with one container (JSON) through the API socket.
func (n *node) createPodOf(b testing.TB, name, container string) {
	body := fmt.Sprintf(`{"metadata":{"name":%q},"spec":{"containers":[%s]}}`, name, container)
	resp, err := n.socketClient().Post("http://x/api/v1/namespaces/default/pods", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		b.Fatalf("create %s: %d", name, resp.StatusCode)
	}
}

// pssKiB is a process's proportional set size: shared pages (the binary's text, which
// every shim and built-in container shares) counted once across the processes using them.
func pssKiB(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(p*float64(len(d)-1))]
}

// BenchmarkPodStartup: pod create → Running with an IP, one pod at a time (p50/p99),
// then a burst of 100 created at once (time until all run), and memory per pod.
// Run with: make bench (root).
// BenchmarkPodStartupStoredImage: pods of an image in the node's store (imported, so
// cached: imagePullPolicy Never), each in the image's root under a writable layer; and,
// in the same run, pods of the catalog's busybox (a view of the host's root), for the
// ratio.
func BenchmarkPodStartupStoredImage(b *testing.B) {
	n := newNode(b)
	n.start()
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	img, _ = mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/sleep"}, Cmd: []string{"3600"}})
	tag, _ := name.NewTag("example.com/bench/sleep:1")
	tarPath := filepath.Join(b.TempDir(), "sleep.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(binary, "images", "--data-dir", n.dataDir, "import", tarPath).CombinedOutput(); err != nil {
		b.Fatalf("import: %v %s", err, out)
	}
	running, stop := n.podWatch(b)
	defer stop()
	measure := func(prefix, container string) []time.Duration {
		var d []time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			n.createPodOf(b, fmt.Sprint(prefix, i), container)
			select {
			case <-running:
				d = append(d, time.Since(start))
			case <-time.After(30 * time.Second):
				b.Fatalf("pod %s%d not running in 30s", prefix, i)
			}
		}
		return d
	}
	b.ResetTimer()
	stored := measure("stored-", `{"name":"c","image":"example.com/bench/sleep:1","imagePullPolicy":"Never"}`)
	host := measure("host-", `{"name":"c","image":"busybox","command":["sleep","3600"]}`)
	burst := n.burst(b, running, "burst-", 100, `{"name":"c","image":"example.com/bench/sleep:1","imagePullPolicy":"Never"}`)
	b.StopTimer()
	b.ReportMetric(burst.Seconds(), "stored-burst100-s")
	b.ReportMetric(float64(percentile(stored, 0.5).Microseconds())/1000, "stored-p50-ms")
	b.ReportMetric(float64(percentile(stored, 0.99).Microseconds())/1000, "stored-p99-ms")
	b.ReportMetric(float64(percentile(host, 0.5).Microseconds())/1000, "catalog-p50-ms")
}

// burst creates count pods of container at once, named prefix0..., and returns the time
// until all run.
func (n *node) burst(b *testing.B, running <-chan string, prefix string, count int, container string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		wg.Go(func() { n.createPodOf(b, fmt.Sprint(prefix, i), container) })
	}
	wg.Wait()
	for got := 0; got < count; {
		select {
		case name := <-running:
			if strings.HasPrefix(name, prefix) {
				got++
			}
		case <-time.After(60 * time.Second):
			b.Fatalf("%d of %d %s pods running after 60s", got, count, prefix)
		}
	}
	return time.Since(start)
}

func BenchmarkPodStartup(b *testing.B) {
	n := newNode(b)
	n.start()
	running, stop := n.podWatch(b)
	defer stop()
	var single []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		n.createPod(b, fmt.Sprint("single-", i))
		select {
		case <-running:
			single = append(single, time.Since(start))
		case <-time.After(30 * time.Second):
			b.Fatalf("pod %d not running in 30s", i)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(single, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(single, 0.99).Microseconds())/1000, "p99-ms")

	daemonPID := n.cmd.Process.Pid
	before := pssKiB(daemonPID)
	const burst = 100
	b.ReportMetric(n.burst(b, running, "burst-", burst, `{"name":"c","image":"registry.k8s.io/pause:3.10"}`).Seconds(), "burst100-s")
	b.ReportMetric(float64(pssKiB(daemonPID)-before)/burst, "daemon-KiB/pod")
	shims, total := 0, 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		// shims (their spec is in the data dir) and the built-in pause containers
		if strings.Contains(string(cmdline), n.dataDir) || strings.HasPrefix(string(cmdline), filepath.Dir(binary)) && strings.Contains(string(cmdline), "\x00--builtin\x00") {
			total += pssKiB(pid)
			shims++
		}
	}
	if shims > 0 {
		b.ReportMetric(float64(total)/float64(burst+b.N), "shim+pause-PSS-KiB/pod")
	}
}
