package apiserver

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
