package apiserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Benchmarks drive the real HTTP handlers over loopback TCP against a real bbolt file
// (fsync on every commit). Run with: make bench

func benchCreates(b *testing.B, clients int) {
	s := newTestServer(b)
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				body := podJSON(fmt.Sprint("p", i), `{"app":"bench"}`)
				resp, err := client.Post(s.url+podsPath, jsonCT, strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					b.Errorf("create: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
}

func BenchmarkCreate(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchCreates(b, clients) })
	}
}

func BenchmarkList10kPods(b *testing.B) {
	s := newTestServer(b)
	pods := s.API().Registry().Lookup("", "pods")
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 10000; i += 32 {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Labels: map[string]string{"app": "x"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
				if _, err := s.API().Create(context.Background(), pods, "default", p, false); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.Get(s.url + podsPath)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := bufio.NewReader(resp.Body).WriteTo(discard{})
		resp.Body.Close()
		b.SetBytes(n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkWatchFanout measures, for 100 HTTP watchers, the time from sending a create
// to each watcher reading its ADDED event.
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 100
	s := newTestServer(b)
	arrivals := make(chan time.Time, watchers*1024)
	var ready sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := 0; w < watchers; w++ {
		ready.Add(1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", s.url+podsPath+"?watch=true&resourceVersion="+fmt.Sprint(s.API().store.Rev()), nil)
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			ready.Done()
			if err != nil {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				arrivals <- time.Now()
			}
		}()
	}
	ready.Wait()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sent := time.Now()
		resp, err := http.Post(s.url+podsPath, jsonCT, strings.NewReader(podJSON(fmt.Sprint("w", i), `{}`)))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		for j := 0; j < watchers; j++ {
			select {
			case at := <-arrivals:
				lat = append(lat, at.Sub(sent))
			case <-time.After(10 * time.Second):
				b.Fatalf("event %d reached %d of %d watchers", i, j, watchers)
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkCreateTransport is what a component pays for a write: through client-go in
// protobuf over the unix socket (as the daemon's components write), or as an in-process
// call of the API (as they did before the client boundary). 16 writers each.
func BenchmarkCreateTransport(b *testing.B) {
	newPod := func(i int64) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Labels: map[string]string{"app": "bench"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	run := func(b *testing.B, create func(*corev1.Pod) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range 16 {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					if err := create(newPod(i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
	}
	b.Run("client-go-protobuf-unix-socket", func(b *testing.B) {
		s := newTestServer(b)
		sock := filepath.Join(b.TempDir(), "api.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: s.Handler()}
		go srv.Serve(ln)
		defer srv.Close()
		cfg := &rest.Config{Host: "http://localhost", QPS: -1, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"},
			Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}
		client := kubernetes.NewForConfigOrDie(cfg)
		run(b, func(p *corev1.Pod) error {
			_, err := client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
			return err
		})
	})
	b.Run("in-process", func(b *testing.B) {
		s := newTestServer(b)
		pods := s.API().Registry().Lookup("", "pods")
		run(b, func(p *corev1.Pod) error {
			_, err := s.API().Create(context.Background(), pods, "default", p, false)
			return err
		})
	})
}
