//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// binary is the minicluster binary under test, built once by TestMain (with
// minicluster-shim beside it).
var binary string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration tests need root (network namespaces); skipping")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "minicluster-it-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "minicluster")
	for _, cmd := range []string{"minicluster", "minicluster-shim"} { // the shim beside the daemon, as make build puts it
		build := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../cmd/"+cmd)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Println("build failed:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a private network namespace ("node") running one minicluster daemon.
type node struct {
	t        testing.TB
	netns    string
	instance string
	dataDir  string
	cmd      *exec.Cmd
	logPath  string
	// coreDNSLog is the log of the CoreDNS startCoreDNS started.
	coreDNSLog string
}

func randomSuffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNode creates a netns with loopback up and a data dir; both go away at cleanup,
// also when the test fails.
func newNode(t testing.TB) *node {
	t.Helper()
	n := &node{t: t, instance: "t" + randomSuffix()[:5], dataDir: t.TempDir()}
	n.netns = "mcit-" + n.instance
	os.Chmod(n.dataDir, 0o700) // as the daemon makes it: it refuses a data dir others can use
	n.logPath = filepath.Join(t.TempDir(), "daemon.log")
	mustRun(t, "ip", "netns", "add", n.netns)
	t.Cleanup(func() {
		n.stop(syscall.SIGKILL)
		// A failed proxy sync is retried as a full one, which can hide a broken diff:
		// no test expects one.
		log, _ := os.ReadFile(n.logPath)
		if bytes.Contains(log, []byte("proxy sync failed")) {
			t.Errorf("the daemon logged a failed proxy sync:\n%s", log)
		} else if t.Failed() { // what the daemon said last, for the failure's story
			lines := bytes.Split(bytes.TrimSpace(log), []byte("\n"))
			t.Logf("the daemon's last log lines:\n%s", bytes.Join(lines[max(0, len(lines)-40):], []byte("\n")))
		}
		// Pod netns live beside the node's: remove them too, also after a failure.
		exec.Command("ip", "netns", "exec", n.netns, binary, "cleanup", "--instance", n.instance, "--data-dir", n.dataDir).Run()
		exec.Command("ip", "netns", "del", n.netns).Run()
		if out, _ := exec.Command("pgrep", "-f", filepath.Join(n.dataDir, "pods")+"/").Output(); len(out) > 0 {
			t.Errorf("container shims outlived cleanup: pids %s", bytes.Fields(out))
		}
	})
	mustRun(t, "ip", "-n", n.netns, "link", "set", "lo", "up")
	return n
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs `minicluster serve` inside the netns and waits until /readyz answers.
func (n *node) start(extra ...string) {
	n.t.Helper()
	args := append([]string{"netns", "exec", n.netns, binary, "serve", "--data-dir", n.dataDir, "--instance", n.instance}, extra...)
	if !slices.Contains(extra, "--dns-upstream") {
		args = append(args, "--dns-upstream", "none") // never the machine's resolver
	}
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	n.cmd = exec.Command("ip", args...)
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	log.Close()
	n.waitReady(15 * time.Second)
}

func (n *node) waitReady(timeout time.Duration) {
	n.t.Helper()
	c := n.socketClient()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		resp, err := c.Get("http://minicluster/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
	if err != nil {
		out, _ := os.ReadFile(n.logPath)
		n.t.Fatalf("daemon not ready after %s; log:\n%s", timeout, out)
	}
}

// stop signals the daemon and waits for it to exit.
func (n *node) stop(sig syscall.Signal) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	n.cmd.Process.Signal(sig)
	err := n.cmd.Wait()
	n.cmd = nil
	return err
}

func (n *node) socket() string { return filepath.Join(n.dataDir, "api.sock") }

// socketClient talks plain HTTP over the daemon's unix socket.
func (n *node) socketClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", n.socket())
		}}}
}

// exec runs a command inside the node's netns.
func (n *node) exec(name string, args ...string) (string, string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.netns, name}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dataDir, "kubeconfig"))
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// kubectlFor returns kubectl inside the netns for t: its output, or t fails.
func (n *node) kubectlFor(t testing.TB) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, errOut, err := n.exec("kubectl", args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
}

// cli runs the minicluster CLI inside the netns against this node.
func (n *node) cli(args ...string) (string, string, error) {
	return n.exec(binary, append([]string{"--data-dir", n.dataDir}, args...)...)
}

// dialInNetns opens a TCP connection from inside the node's netns (the API's TCP
// listener lives there). The goroutine's thread is left in the netns and discarded.
func (n *node) dialInNetns(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := setNetns(n.netns); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = cond()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("condition not met within %s: %v", timeout, last)
	}
}

// setNetns moves the calling thread into the named netns; lock the thread first.
func setNetns(name string) error {
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// envInt is the integer in environment variable name (a test's knob), else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
