//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The seed article's demo, typed as written with the installed kubectl: once with the
// commands on stdin (-i), once on a terminal (-it, kubectl on a pty as under a user's
// shell). Each run checks nslookup's lines (the FQDN and the ClusterIP), nginx's welcome
// page, the exit code, and that --rm removed the pod.
func TestDemo(t *testing.T) {
	n := newNode(t)
	n.start()
	for _, args := range [][]string{
		{"create", "deployment", "nginx-demo", "--image=nginx"},
		{"expose", "deployment", "nginx-demo", "--port=80"},
	} {
		if _, errOut, err := n.exec("kubectl", args...); err != nil {
			t.Fatalf("kubectl %v: %s", args, errOut)
		}
	}
	ip := n.clusterIP(t, "nginx-demo")
	// What a person's typing gives the deployment: time for its pod to be ready.
	eventually(t, 30*time.Second, func() error {
		out, _, err := n.exec("kubectl", "get", "endpoints", "nginx-demo", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		if err != nil || out == "" {
			return fmt.Errorf("no ready endpoint: %q %v", out, err)
		}
		return nil
	})
	demoLines := "nslookup nginx-demo\nwget -qO- http://nginx-demo\nexit\n"
	check := func(mode, out string) {
		t.Helper()
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`Name:\s+nginx-demo\.default\.svc\.cluster\.local\s*\n\s*Address:\s+` + regexp.QuoteMeta(ip) + `\b`),
			regexp.MustCompile(`Welcome to nginx!`),
			regexp.MustCompile(`pod "dns-test" deleted`),
		} {
			if !want.MatchString(out) {
				t.Errorf("%s: no %q in\n%s", mode, want, out)
			}
		}
		eventually(t, 10*time.Second, func() error {
			if _, errOut, err := n.exec("kubectl", "get", "pod", "dns-test"); err == nil || !strings.Contains(errOut, "NotFound") {
				return fmt.Errorf("pod dns-test still there: %v %s", err, errOut)
			}
			return nil
		})
	}

	// Without a terminal: the commands on stdin.
	out, err := runWithin(n.kubectl("run", "dns-test", "--image=busybox:1.36", "-i", "--rm", "--restart=Never", "--", "sh"), demoLines)
	if err != nil {
		t.Errorf("kubectl run -i: %v\n%s", err, out)
	}
	check("-i", string(out))
	// The container's exit code is kubectl's.
	var exit *exec.ExitError
	if out, err := runWithin(n.kubectl("run", "exit-code", "--image=busybox:1.36", "-i", "--rm", "--restart=Never", "--", "sh"), "exit 7\n"); !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("kubectl run -i with exit 7: %v\n%s", err, out)
	}

	// On a terminal: type each line once the shell's prompt is there.
	term := n.onTerminal(t, "run", "dns-test", "--image=busybox:1.36", "-it", "--rm", "--restart=Never", "--", "sh")
	term.expect("try pressing enter")
	term.send("\n") // as the hint says: the prompt printed before the attach is not shown again
	for line := range strings.Lines(demoLines) {
		term.expect("/ # ")
		term.settle() // the line editor's questions answered, as a person waits to see the prompt
		term.send(line)
		term.expect(strings.TrimSpace(line)) // its echo: the next prompt comes after it
	}
	if err := term.wait(); err != nil {
		t.Errorf("kubectl run -it: %v\n%s", err, term.output())
	}
	check("-it", term.output())
}

// runWithin runs cmd with stdin, failing it after a minute instead of hanging the test.
func runWithin(cmd *exec.Cmd, stdin string) ([]byte, error) {
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	return out.Bytes(), err
}

// kubectl is a kubectl command in the node's netns, talking to the node.
func (n *node) kubectl(args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.netns, "kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.dataDir+"/kubeconfig")
	return cmd
}

// terminal is kubectl running on a pseudo-terminal, driven as a person would.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	seen int // how far expect has read
	done chan struct{}
}

func (n *node) onTerminal(t *testing.T, args ...string) *terminal {
	cmd := n.kubectl(args...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := tty.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:k])
			term.mu.Unlock()
			// busybox's line editor asks where the cursor is; a terminal answers.
			for range bytes.Count(buf[:k], []byte("\x1b[6n")) {
				io.WriteString(tty, "\x1b[1;5R")
			}
			if err != nil {
				close(term.done)
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		tty.Close()
	})
	return term
}

// expect waits until s appears in the output after what earlier calls matched.
func (term *terminal) expect(s string) {
	term.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		term.mu.Lock()
		defer term.mu.Unlock()
		i := strings.Index(term.out.String()[term.seen:], s)
		if i >= 0 {
			term.seen += i + len(s)
		}
		return i >= 0, nil
	})
	if err != nil {
		term.t.Fatalf("no %q on the terminal:\n%s", s, term.output())
	}
}

func (term *terminal) send(s string) { io.WriteString(term.tty, s) }

// settle waits until the output has been still for 200 ms.
func (term *terminal) settle() {
	last, since := -1, time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		term.mu.Lock()
		k := term.out.Len()
		term.mu.Unlock()
		if k != last {
			last, since = k, time.Now()
		} else if time.Since(since) >= 200*time.Millisecond {
			return
		}
	}
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// wait waits for kubectl to end and its output to be read.
func (term *terminal) wait() error {
	errc := make(chan error, 1)
	go func() { errc <- term.cmd.Wait() }()
	select {
	case err := <-errc:
		select {
		case <-term.done:
		case <-time.After(5 * time.Second):
		}
		return err
	case <-time.After(60 * time.Second):
		return errors.New("kubectl did not end")
	}
}
