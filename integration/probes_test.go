//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A readiness probe holds Ready back until it passes; a failing liveness probe restarts
// its container.
func TestProbes(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "testdata/probes.yaml"); err != nil {
		t.Fatal(errOut)
	}
	state := func() string {
		out, _, _ := n.exec("kubectl", "get", "pod", "probed", "-o",
			`jsonpath={range .status.containerStatuses[*]}{.name}={.ready}/{.restartCount} {end}`)
		return out
	}
	eventually(t, 10*time.Second, func() error {
		if s := state(); !strings.Contains(s, "web=false/0") || !strings.Contains(s, "live=true/0") {
			return fmt.Errorf("before the readiness delay: %q", s)
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if s := state(); !strings.Contains(s, "web=true/0") {
			return fmt.Errorf("readiness not passed: %q", s)
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		if s := state(); !strings.Contains(s, "live=true/1") && !strings.Contains(s, "live=false/1") {
			return fmt.Errorf("liveness failure did not restart the container: %q", s)
		}
		return nil
	})
	if s := state(); !strings.Contains(s, "web=true/0") {
		t.Errorf("the healthy container was touched: %q", s)
	}
	// The kubelet's events say why (kubectl get events, found by field selector).
	events, errOut, err := n.exec("kubectl", "get", "events", "--field-selector", "involvedObject.name=probed", "-o",
		`jsonpath={range .items[*]}{.reason}/{.involvedObject.fieldPath}: {.message}{"\n"}{end}`)
	if err != nil {
		t.Fatal(errOut)
	}
	for _, want := range []string{"Unhealthy/spec.containers{live}: Liveness probe failed: ",
		"Killing/spec.containers{live}: Container live failed liveness probe, will be restarted"} {
		if !strings.Contains(events, want) {
			t.Errorf("no event %q in:\n%s", want, events)
		}
	}
	flip := func() string {
		out, _, _ := n.exec("kubectl", "get", "pod", "flip", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return out
	}
	eventually(t, 10*time.Second, func() error {
		if r := flip(); r != "True" {
			return fmt.Errorf("flip Ready=%q, want True first", r)
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if r := flip(); r != "False" {
			return fmt.Errorf("flip Ready=%q after its readiness file went, want False", r)
		}
		return nil
	})
}

// Init containers run to completion first; a failed one fails a Never pod.
func TestInitContainers(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "testdata/init.yaml"); err != nil {
		t.Fatal(errOut)
	}
	status := func(pod string) string {
		out, _, _ := n.exec("kubectl", "get", "pod", pod, "--no-headers")
		return strings.Join(strings.Fields(out), " ")
	}
	eventually(t, 5*time.Second, func() error {
		if s := status("withinit"); !strings.Contains(s, "Init:0/1") {
			return fmt.Errorf("withinit: %q", s)
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if s := status("withinit"); !strings.Contains(s, "1/1 Running") {
			return fmt.Errorf("withinit: %q", s)
		}
		if s := status("badinit"); !strings.Contains(s, "Init:Error") {
			return fmt.Errorf("badinit: %q", s)
		}
		return nil
	})
	if out, _, err := n.exec("kubectl", "logs", "withinit", "-c", "setup"); err != nil || out != "init done\n" {
		t.Errorf("init container log %q (%v)", out, err)
	}
	if out, _, _ := n.exec("kubectl", "get", "pod", "badinit", "-o", "jsonpath={.status.phase}"); out != "Failed" {
		t.Errorf("badinit phase %q", out)
	}
}

// A preStop hook runs before SIGTERM, within the grace period.
func TestPreStopHook(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "testdata/prestop.yaml"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 10*time.Second, func() error {
		if out, _, _ := n.exec("kubectl", "get", "pod", "hooked", "--no-headers"); !strings.Contains(out, "Running") {
			return fmt.Errorf("%q", out)
		}
		return nil
	})
	start := time.Now()
	if _, errOut, err := n.exec("kubectl", "delete", "pod", "hooked"); err != nil {
		t.Fatal(errOut)
	}
	if d := time.Since(start); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("delete with a 2 s preStop sleep took %s", d)
	}
}
