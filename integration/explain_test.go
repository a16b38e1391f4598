//go:build integration

package integration

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// minicluster explain over fixtures with one service for each kind of path, in both
// proxy modes, each compared with a golden output (pod addresses written as <pod>, as
// they are the only thing that may differ between runs; `go test -tags integration
// -run TestExplainGolden ./integration -update` rewrites them).
func TestExplainGolden(t *testing.T) { proxyModes(t, testExplainGolden, "--node-name", "n1") }

func testExplainGolden(t *testing.T, n *node) {
	kubectl := n.kubectlFor(t)
	data, err := os.ReadFile("testdata/explain/fixtures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ips := map[string]string{} // pod IP → <name>
	for i, doc := range strings.Split(string(data), "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%d.yaml", i))
		os.WriteFile(file, []byte(doc), 0o600)
		kubectl("create", "-f", file)
		if obj.Kind != "Pod" {
			continue
		}
		// One at a time: each pod has the same address on every run.
		eventually(t, 30*time.Second, func() error {
			ip := kubectl("get", "pod", obj.Metadata.Name, "-o", "jsonpath={.status.podIP}")
			if ip == "" {
				return errors.New("no address yet")
			}
			ips[ip] = "<" + obj.Metadata.Name + ">"
			return nil
		})
	}
	kubectl("wait", "--for=condition=Ready", "pod/web-a", "pod/web-b", "pod/db-0", "pod/db-1", "--timeout=60s")
	eventually(t, 30*time.Second, func() error {
		if out, _, err := n.cli("explain", "sick"); err == nil || !strings.Contains(out, "database not reachable") {
			return fmt.Errorf("the sick pod's probe failure not seen yet:\n%s", out)
		}
		if out, _, err := n.cli("explain", "web"); err != nil || strings.Count(out, "50.0%") != 2 {
			return fmt.Errorf("web not programmed yet:\n%s", out)
		}
		return nil
	})
	webA := strings.TrimSpace(kubectl("get", "pod", "web-a", "-o", "jsonpath={.status.podIP}"))
	addrs := slices.Sorted(func(yield func(string) bool) {
		for ip := range ips {
			if !yield(ip) {
				return
			}
		}
	})
	slices.SortFunc(addrs, func(a, b string) int { return len(b) - len(a) }) // 10.244.0.12 before 10.244.0.1
	mask := func(s string) string {
		s = strings.ReplaceAll(s, strings.ToUpper(n.instance)+"-", "MC-")
		for _, ip := range addrs {
			s = regexp.MustCompile(regexp.QuoteMeta(ip)+`\b`).ReplaceAllString(s, ips[ip])
		}
		return s
	}
	for _, c := range []struct {
		name   string
		args   []string
		broken bool
	}{
		{"service", []string{"web"}, false},
		{"service-port-fqdn", []string{"web.default.svc.cluster.local:80"}, false},
		{"cluster-ip", []string{"10.96.100.10:80"}, false},
		{"no-ready-endpoints", []string{"sick"}, true},
		{"wrong-target-port", []string{"typo"}, true},
		{"headless", []string{"db"}, false},
		{"headless-pod", []string{"db-0.db"}, false},
		{"external-name", []string{"search"}, false},
		{"nodeport-local", []string{"n1:30080"}, false},
		{"not-found", []string{"webb"}, true},
		{"wrong-port", []string{"web:8080"}, true},
		{"pod-ip", []string{webA}, false},
		{"from-pod", []string{"--from", "db-0", "svc/web"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, err := n.cli(append([]string{"explain"}, c.args...)...)
			if (err != nil) != c.broken || errOut != "" {
				t.Errorf("explain %v: err %v (broken: %v), stderr %q", c.args, err, c.broken, errOut)
			}
			got := []byte(mask(out))
			golden := filepath.Join("testdata", "explain", n.proxyMode(), c.name+".txt")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("explain %s differs from %s:\n--- got\n%s\n--- want\n%s", strings.Join(c.args, " "), golden, got, want)
			}
		})
	}
	// --from takes the pod's own search path, from the resolv.conf it was given (it
	// includes the host's search domains, so it is not in a golden file).
	resolv := kubectl("exec", "db-0", "--", "cat", "/etc/resolv.conf")
	var search string
	for line := range strings.Lines(resolv) {
		if rest, ok := strings.CutPrefix(line, "search "); ok {
			search = strings.TrimSpace(rest)
		}
	}
	if out, _, err := n.cli("explain", "--from", "db-0", "web"); err != nil || search == "" || !strings.Contains(out, "search "+search+", ndots:5") ||
		!strings.Contains(out, "as pod default/db-0 sees it") {
		t.Errorf("explain --from db-0 web (the pod's search: %q): %v\n%s", search, err, out)
	}
	// -o json is the same path, for scripts.
	out, _, err := n.cli("explain", "-o", "json", "web")
	if err != nil || !strings.Contains(out, `"verdict": "OK: a connection to web reaches one of 2 ready endpoint(s)`) {
		t.Errorf("explain -o json web: %v\n%s", err, out)
	}
}
