//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogs(t *testing.T) {
	n := newNode(t)
	n.start()
	for _, args := range [][]string{
		{"run", "ticker", "--image=busybox:1.36", "--restart=Never", "--", "sh", "-c", "i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"},
		{"run", "crasher", "--image=busybox", "--restart=OnFailure", "--", "sh", "-c", "echo run-$(date +%s%N); sleep 0.3; exit 1"},
	} {
		if _, errOut, err := n.exec("kubectl", args...); err != nil {
			t.Fatalf("kubectl %v: %s", args, errOut)
		}
	}
	eventually(t, 10*time.Second, func() error {
		out, _, err := n.exec("kubectl", "logs", "ticker", "--tail=1")
		// Past its first line, so the full log below has at least two.
		if err != nil || !strings.HasPrefix(out, "tick ") || out == "tick 0\n" || strings.Count(out, "\n") != 1 {
			return fmt.Errorf("logs --tail=1: %q %v", out, err)
		}
		return nil
	})
	out, _, _ := n.exec("kubectl", "logs", "ticker")
	if !strings.HasPrefix(out, "tick 0\ntick 1\n") {
		t.Errorf("full log starts %q", out[:min(len(out), 40)])
	}
	if out, _, _ := n.cli("logs", "ticker", "--tail", "1", "--timestamps"); !strings.Contains(out, "Z tick ") {
		t.Errorf("minicluster logs --timestamps: %q", out)
	}

	// -f streams lines written after it started.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := osexec.CommandContext(ctx, "ip", "netns", "exec", n.netns, "kubectl", "logs", "-f", "ticker", "--tail=1")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dataDir, "kubeconfig"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var got []string
	for len(got) < 5 && sc.Scan() {
		got = append(got, sc.Text())
	}
	cancel()
	cmd.Wait()
	if len(got) < 5 {
		t.Errorf("logs -f gave %d lines: %v", len(got), got)
	}

	// --previous shows the run before the restart.
	eventually(t, 30*time.Second, func() error {
		prev, _, err := n.exec("kubectl", "logs", "crasher", "--previous")
		cur, _, _ := n.exec("kubectl", "logs", "crasher")
		if err != nil || !strings.HasPrefix(prev, "run-") || !strings.HasPrefix(cur, "run-") || prev == cur {
			return fmt.Errorf("previous %q current %q (%v)", prev, cur, err)
		}
		return nil
	})
	if _, errOut, err := n.exec("kubectl", "logs", "nope"); err == nil || !strings.Contains(errOut, `pods "nope" not found`) {
		t.Errorf("logs of a missing pod: %v %s", err, errOut)
	}
}
