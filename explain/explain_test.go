package explain

import (
	"strings"
	"testing"
)

func TestSplitPort(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		port int32
	}{
		"backend":                           {"backend", 0},
		"backend:80":                        {"backend", 80},
		"10.96.0.10:53":                     {"10.96.0.10", 53},
		"n1:30080":                          {"n1", 30080},
		"svc/web:8080":                      {"svc/web", 8080},
		"backend:http":                      {"backend:http", 0},
		"backend:99999":                     {"backend:99999", 0},
		"fd00::1":                           {"fd00::1", 0},
		"web.default.svc.cluster.local:443": {"web.default.svc.cluster.local", 443},
	} {
		host, port := splitPort(in)
		if host != want.host || port != want.port {
			t.Errorf("splitPort(%q) = %q, %d; want %q, %d", in, host, port, want.host, want.port)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"web", "webb", 1}, {"backend", "backnd", 1}, {"db", "web", 2}, {"", "abc", 3}, {"same", "same", 0}} {
		if d := distance(c.a, c.b); d != c.d {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
}

// The text of a broken path names every problem and no verdict line beside them; an
// intact path ends with its verdict.
func TestText(t *testing.T) {
	ok := (&Path{Target: "web", Namespace: "default", Verdict: "OK: fine"}).Text()
	if !strings.HasSuffix(ok, "\nOK: fine\n") || !strings.HasPrefix(ok, "web, as a pod in namespace default sees it\n") {
		t.Errorf("intact path:\n%s", ok)
	}
	broken := (&Path{Target: "x", Namespace: "default", From: "default/c", Problems: []string{"one", "two"}, Verdict: "BROKEN: one"}).Text()
	if strings.Count(broken, "BROKEN: one") != 1 || !strings.Contains(broken, "BROKEN: two") || !strings.Contains(broken, "as pod default/c sees it") {
		t.Errorf("broken path:\n%s", broken)
	}
}
