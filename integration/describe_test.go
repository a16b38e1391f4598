//go:build integration

package integration

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// minicluster describe prints what the installed kubectl describe prints, for every
// kind the walkthrough shows — with an event, a name prefix and a missing object.
func TestDescribeMatchesKubectl(t *testing.T) {
	n := newNode(t)
	n.start()
	n.applyBackend(t, 3)
	uid, errOut, err := n.exec("kubectl", "get", "svc", "backend", "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		t.Fatal(errOut)
	}
	event := `{"apiVersion":"v1","kind":"Event","metadata":{"name":"backend.1"},"type":"Warning","reason":"Tested","message":"a test event",
		"involvedObject":{"apiVersion":"v1","kind":"Service","name":"backend","namespace":"default","uid":"` + uid + `"},
		"source":{"component":"tester"},"count":2,"firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:10:00Z"}`
	if code, err := send(n.socketClient(), "POST", "/api/v1/namespaces/default/events", event); err != nil || code != 201 {
		t.Fatalf("event: %d %v", code, err)
	}
	// A pod with what the backend's lack: resources, probes, environment, a failed run.
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"done"},"spec":{"restartPolicy":"Never","containers":[{"name":"c",
		"image":"busybox:1.36","command":["sh","-c","exit 3"],"env":[{"name":"A","value":"b"}],
		"resources":{"requests":{"cpu":"100m"},"limits":{"cpu":"200m","memory":"64Mi"}},
		"readinessProbe":{"exec":{"command":["true"]},"periodSeconds":5},"livenessProbe":{"httpGet":{"path":"/h","port":8080}}}]}}`
	if code, err := send(n.socketClient(), "POST", "/api/v1/namespaces/default/pods", pod); err != nil || code != 201 {
		t.Fatalf("pod: %d %v", code, err)
	}
	eventually(t, 10*time.Second, func() error {
		if p := n.podStatuses(t, ""); !slices.ContainsFunc(p, func(s podStatus) bool { return s.Name == "done" && s.Phase == "Failed" }) {
			return fmt.Errorf("pods: %v", p)
		}
		return nil
	})
	// Ages tick between the two commands, and the node's lease is renewed.
	age := regexp.MustCompile(`\b\d+(s|m|h|d|m\d+s|h\d+m)\b`)
	renewed := regexp.MustCompile(`(?m)^  RenewTime: .*\n`)
	same := func(s string) string { return renewed.ReplaceAllString(age.ReplaceAllString(s, "AGE"), "") }
	for _, args := range [][]string{
		{"svc", "backend"}, {"svc"}, {"endpoints", "backend"}, {"endpointslices"}, {"deploy/backend"}, {"rs"},
		{"pods", "backend"}, {"pod", "done"}, {"nodes"}, {"ns", "default"}, {"events"}, {"svc", "nope", "backend"}, {"pods", "-l", "app=none"},
	} {
		eventually(t, 10*time.Second, func() error {
			want, wantErr, wantFail := n.exec("kubectl", append([]string{"describe"}, args...)...)
			got, gotErr, gotFail := n.cli(append([]string{"describe"}, args...)...)
			if same(got) != same(want) || gotErr != wantErr || (gotFail == nil) != (wantFail == nil) {
				return fmt.Errorf("describe %v:\nkubectl (%v):\n%s%s\nminicluster (%v):\n%s%s", args, wantFail, want, wantErr, gotFail, got, gotErr)
			}
			return nil
		})
	}
	// Not only the same as kubectl: what the walkthrough points at is there.
	out, _, _ := n.cli("describe", "svc", "backend")
	for _, want := range []string{`Endpoints:\s+10\.244\.0\.\d+:8080,10\.244\.0\.\d+:8080,10\.244\.0\.\d+:8080\n`,
		`Warning\s+Tested\s+\S+ \(x2 over \S+\)\s+tester\s+a test event\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("describe svc backend does not match %s:\n%s", want, out)
		}
	}
	// The API server's proxy subresources reach the service's pods (as kubectl proxy and
	// kubectl get --raw use them).
	seen := map[string]bool{}
	for range 20 {
		out, errOut, err := n.exec("kubectl", "get", "--raw", "/api/v1/namespaces/default/services/backend:http/proxy/hostname")
		if err != nil || !strings.HasPrefix(out, "backend-") {
			t.Fatalf("service proxy: %q %s %v", out, errOut, err)
		}
		seen[out] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 requests through the service proxy reached %v, want the endpoints chosen at random", seen)
	}
	pods := n.pods(t)
	if out, errOut, err := n.exec("kubectl", "get", "--raw", "/api/v1/namespaces/default/pods/"+pods[0].name+":8080/proxy/hostname"); err != nil || out != pods[0].name {
		t.Errorf("pod proxy to %s: %q %s %v", pods[0].name, out, errOut, err)
	}

	// The node's lease is held by the node and renewed (every 10 s), as the kubelet's.
	lease := func() string {
		out, _, _ := n.exec("kubectl", "get", "lease", "-n", "kube-node-lease", "-o", `jsonpath={range .items[*]}{.metadata.name}={.spec.holderIdentity} {.spec.renewTime}{end}`)
		return out
	}
	first := lease()
	held, _, _ := strings.Cut(first, " ")
	if name, holder, _ := strings.Cut(held, "="); name == "" || holder != name {
		t.Errorf("lease %q: want the node holding its own", first)
	}
	eventually(t, 15*time.Second, func() error {
		if now := lease(); now == first {
			return fmt.Errorf("lease not renewed: %q", now)
		}
		return nil
	})

	// The kubelet's and the scheduler's events, as kubectl describe pod shows them.
	out, _, _ = n.exec("kubectl", "describe", "pod", "done")
	for _, want := range []string{`Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/done to \S+\n`,
		`Normal\s+Pulled\s+\S+\s+kubelet\s+Container image "busybox:1.36" already present on machine\n`,
		`Normal\s+Created\s+\S+\s+kubelet\s+Created container: c\n`, `Normal\s+Started\s+\S+\s+kubelet\s+Started container c\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("kubectl describe pod done does not match %s:\n%s", want, out)
		}
	}
}
