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
	eventually(t, 15*time.Second, func() error {
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
}
