//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// apiForward relays connections from 127.0.0.1 in the test's netns to the API inside the
// node's netns (a browser there could not reach it), counting the bytes sent back.
type apiForward struct {
	addr string
	down atomic.Int64
}

func (n *node) forwardAPI(t testing.TB) *apiForward {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &apiForward{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := n.dialInNetns(context.Background(), "tcp", "127.0.0.1:6443")
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, s)
			mu.Unlock()
			conns.Go(func() { io.Copy(s, c); s.Close() })
			conns.Go(func() {
				io.Copy(countingWriter{c, &f.down}, s)
				c.Close()
			})
		}
	})
	return f
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// loginLink asks `minicluster ui` for a one-time link, pointed at the forward.
func (n *node) loginLink(t testing.TB, f *apiForward) string {
	t.Helper()
	out, errOut, err := n.cli("ui")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || !strings.Contains(lines[len(lines)-1], "/ui/login?code=") {
		t.Fatalf("minicluster ui: %v\n%s%s", err, out, errOut)
	}
	return strings.Replace(lines[len(lines)-1], "127.0.0.1:6443", f.addr, 1)
}

// newBrowser starts a headless Chromium (Debian's chromium package) for t.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: make deps installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1400, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now
		t.Fatal(err)
	}
	return ctx
}

// The topology page in a real headless browser: the token (or a session from a
// one-time link) is required; the seed's backend service shows with its 3 pods; deleting
// one shows on the page within a second and its replacement follows; a click shows the
// service's explain path.
func TestTopologyPage(t *testing.T) {
	n := newNode(t)
	n.start()
	n.applyBackend(t, 3)
	f := n.forwardAPI(t)
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, p := range []string{"/ui/", "/ui/events", "/explain?target=backend"} {
		resp, err := insecure.Get("https://" + f.addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token or session: %d, want 401", p, resp.StatusCode)
		}
	}
	link := n.loginLink(t, f)
	ctx := newBrowser(t)
	row := `[data-svc="default/backend"]`
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(row+" .ready")); err != nil {
		t.Fatal(err)
	}
	ready, err := chromedp.Run(ctx, chromedp.Text(row+" .ready"))
	if err != nil {
		t.Fatal(err)
	}
	if ready != "3/3 ready" {
		t.Errorf("the backend row says %q, want 3/3 ready", ready)
	}
	if resp, err := insecure.Get(link); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the login link worked twice: %v %v", resp, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(row), chromedp.WaitVisible(row+" table.eps")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("path-text").textContent.includes("OK: ")`)); err != nil {
		t.Fatal(err)
	}
	path, err := chromedp.Run(ctx, chromedp.Text("#path-text"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(path, "Service default/backend") || strings.Count(path, "pod default/backend-") != 3 {
		t.Errorf("the explain panel:\n%s", path)
	}
	if *update {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile("../docs/ui.png", shot, 0o644)
	}
	pods, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-svc="default/backend"] tr[data-pod]')].map(r => r.dataset.pod)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 {
		t.Fatalf("pods on the page: %v", pods)
	}
	victim := pods[0]
	kubectl := n.kubectlFor(t)
	kubectl("delete", "pod", victim, "--wait=false")
	start := time.Now()
	// The page shows the deleted pod's endpoint terminating, or gone.
	shows := fmt.Sprintf(`(() => { const r = document.querySelector('[data-svc="default/backend"] tr[data-pod=%q]'); return !r || r.textContent.includes("terminating") || r.textContent.includes("not ready"); })()`, victim)
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](shows, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("the deleted pod %s was not shown as going within 1 s: %v", victim, err)
	}
	t.Logf("pod deleted → the page shows it going: %s", time.Since(start).Round(time.Millisecond))
	replaced := fmt.Sprintf(`(() => { const ps = [...document.querySelectorAll('[data-svc="default/backend"] tr[data-pod]')].map(r => r.dataset.pod); return !ps.includes(%q) && ps.length === 3 && document.querySelector('[data-svc="default/backend"] .ready').textContent === "3/3 ready"; })()`, victim)
	rctx, cancel2 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel2()
	if _, err := chromedp.Run(rctx, chromedp.Poll[bool](replaced, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(row))
		t.Fatalf("the replacement pod never showed ready: %v\n%s", err, html)
	}
	t.Logf("pod deleted → its replacement shown ready: %s", time.Since(start).Round(time.Millisecond))
}

// BenchmarkTopologyPage loads the page in a new tab of a running headless Chromium with
// 1,000 services (and the cluster's own two): the bytes sent to the browser (through
// TLS) and the page's own time from following the login link to every service on
// screen. The target: ≤ 200 KB and ≤ 300 ms.
func BenchmarkTopologyPage(b *testing.B) {
	n := newNode(b)
	n.start("--log-level", "warn")
	c := n.socketClient()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range 1000 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ns := "default"
			body := fmt.Sprintf(`{"metadata":{"name":"svc-%04d","namespace":%q},"spec":{"selector":{"app":"svc-%04d"},"ports":[{"name":"http","port":80,"targetPort":8080}]}}`, i, ns, i)
			if code, err := send(c, "POST", "/api/v1/namespaces/"+ns+"/services", body); err != nil || code != 201 {
				b.Errorf("service %d: %d %v", i, code, err)
			}
		})
	}
	wg.Wait()
	f := n.forwardAPI(b)
	browser := newBrowser(b) // running already, as a user's is: each load in a new tab
	var bytesDown, millis float64
	for range b.N {
		link := n.loginLink(b, f)
		ctx, cancel := chromedp.NewContext(browser)
		defer cancel()
		before := f.down.Load()
		if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("count").textContent.startsWith("1002 services")`,
			chromedp.WithPollingInterval(5*time.Millisecond))); err != nil {
			b.Fatal(err)
		}
		// The page's own clock: from the login link's navigation to every service on
		// screen (chromedp's polling would add its own round trips).
		shown, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("snapshot-shown")[0].startTime`))
		if err != nil {
			b.Fatal(err)
		}
		millis += shown
		bytesDown += float64(f.down.Load() - before)
		if err := chromedp.Do(ctx, chromedp.SetValue("#search", "svc-09")); err != nil {
			b.Fatal(err)
		}
		visible, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.getElementById("search").dispatchEvent(new Event("input")),
			[...document.querySelectorAll(".svc")].filter(r => !r.hidden).length`))
		if err != nil {
			b.Fatal(err)
		}
		if visible != 100 {
			b.Errorf("searching svc-09 left %d rows, want 100", visible)
		}
	}
	b.ReportMetric(millis/float64(b.N), "ms/load")
	b.ReportMetric(bytesDown/float64(b.N)/1024, "KB/load")

}
