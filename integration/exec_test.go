//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubectl exec, without a terminal: output on both streams, stdin, and the exit code.
func TestKubectlExec(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "testdata/flip.yaml"); err != nil {
		t.Fatal(errOut)
	}
	var pod string
	eventually(t, 30*time.Second, func() error {
		for _, p := range n.podStatuses(t, "app=flip") {
			if p.Phase == "Running" {
				pod = p.Name
				return nil
			}
		}
		return errors.New("no running pod")
	})
	out, errOut, err := n.exec("kubectl", "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; hostname; exit 3")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("exit: %v (stderr %q)", err, errOut)
	}
	if out != "out\n"+pod+"\n" || !strings.HasPrefix(errOut, "err\n") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	cmd := exec.Command("ip", "netns", "exec", n.netns, "kubectl", "exec", "-i", pod, "--", "sh", "-c", "cat; echo done")
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+n.dataDir+"/kubeconfig")
	cmd.Stdin = strings.NewReader("hello\n")
	b, err := cmd.CombinedOutput()
	if err != nil || string(b) != "hello\ndone\n" {
		t.Errorf("kubectl exec -i: %q %v", b, err)
	}
	// With a terminal (kubectl itself on one, under script): the command sees a tty,
	// its exit code comes back.
	tty := exec.Command("ip", "netns", "exec", n.netns, "script", "-qec",
		"stty cols 91 rows 27; kubectl exec -it "+pod+" -- sh -c 'tty; stty size; exit 4'", "/dev/null")
	tty.Env = append(tty.Environ(), "KUBECONFIG="+n.dataDir+"/kubeconfig")
	b, err = tty.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 4 || !strings.Contains(string(b), "/dev/pts/") || !strings.Contains(string(b), "27 91") {
		t.Errorf("kubectl exec -it: %q %v", b, err)
	}
}

// kubectl attach to running pods (output only, and stdin with stdinOnce), the demo's
// manifests attached to as a person would, logs of deploy/x and by selector, and
// minicluster's own exec and logs.
func TestAttachAndLogs(t *testing.T) {
	n := newNode(t)
	n.start()
	talk := "i=0; while true; do echo talk $i from $(hostname); i=$((i+1)); sleep 0.2; done"
	if _, errOut, err := n.exec("kubectl", "create", "deployment", "talker", "--image=busybox:1.36", "--replicas=2", "--", "sh", "-c", talk); err != nil {
		t.Fatal(errOut)
	}
	for _, f := range []string{"../manifests/nginx-demo.yaml", "testdata/echoer.yaml"} {
		if _, errOut, err := n.cli("apply", "-f", f); err != nil {
			t.Fatalf("%s: %s", f, errOut)
		}
	}
	var talkers []string
	eventually(t, 30*time.Second, func() error {
		talkers = nil
		for _, p := range n.podStatuses(t, "app=talker") {
			if p.Phase == "Running" {
				talkers = append(talkers, p.Name)
			}
		}
		if len(talkers) != 2 {
			return fmt.Errorf("running talkers: %v", talkers)
		}
		return nil
	})
	// Logs: deploy/x picks one pod; -l every pod the selector picks (10 lines each).
	eventually(t, 10*time.Second, func() error {
		out, _, err := n.exec("kubectl", "logs", "deploy/talker", "--tail=1")
		if err != nil || !strings.HasPrefix(out, "talk ") {
			return fmt.Errorf("logs deploy/talker: %q %v", out, err)
		}
		for _, logs := range [][]string{{"kubectl", "logs", "-l", "app=talker"}, {binary, "logs", "-l", "app=talker", "--data-dir", n.dataDir}} {
			out, _, err := n.exec(logs[0], logs[1:]...)
			if err != nil {
				return fmt.Errorf("%v: %v", logs, err)
			}
			for _, p := range talkers {
				if c := strings.Count(out, " from "+p+"\n"); c != 10 {
					return fmt.Errorf("%v: %d lines from %s in %q", logs, c, p, out)
				}
			}
		}
		return nil
	})

	// Attach without stdin: the output from now on, until kubectl is stopped.
	attach := n.kubectl("attach", talkers[0])
	var buf bytes.Buffer
	attach.Stdout = &buf
	attach.Start()
	before, _, _ := n.exec("kubectl", "logs", talkers[0], "--tail=1")
	eventually(t, 10*time.Second, func() error {
		if strings.Count(buf.String(), "talk ") < 3 {
			return fmt.Errorf("attach output %q", buf.String())
		}
		return nil
	})
	attach.Process.Kill()
	attach.Wait()
	var first int
	fmt.Sscanf(buf.String(), "talk %d", &first)
	var last int
	fmt.Sscanf(before, "talk %d", &last)
	if first < last {
		t.Errorf("attach began with an old line: %q, the log's last was %q before", buf.String(), before)
	}

	// Attach with stdin to a pod that keeps one (stdinOnce): closing it ends the pod.
	eventually(t, 30*time.Second, func() error {
		if p := n.podStatuses(t, "app=echoer"); len(p) != 1 || p[0].Phase != "Running" {
			return fmt.Errorf("echoer: %v", p)
		}
		return nil
	})
	out, err := runWithin(n.kubectl("attach", "-i", "echoer"), "a\nb\n")
	if err != nil || !strings.Contains(string(out), "got a\ngot b\n") {
		t.Errorf("attach -i: %v %q", err, out)
	}
	eventually(t, 10*time.Second, func() error {
		if p := n.podStatuses(t, "app=echoer"); len(p) != 1 || p[0].Phase != "Succeeded" {
			return fmt.Errorf("echoer after its stdin closed: %v", p)
		}
		return nil
	})

	// The dns-test manifest, attached to on a terminal after a daemon restart (the
	// shim serves attaches, not the daemon): the window size arrives, the shell's exit
	// ends the pod with its code.
	if _, errOut, err := n.cli("apply", "-f", "../manifests/dns-test.yaml"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 30*time.Second, func() error {
		if p := n.podStatuses(t, "run=dns-test"); len(p) != 1 || p[0].Phase != "Running" {
			return fmt.Errorf("dns-test: %v", p)
		}
		out, _, _ := n.exec("kubectl", "get", "endpoints", "nginx-demo", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		if out == "" {
			return errors.New("nginx-demo has no ready endpoint")
		}
		return nil
	})
	n.stop(syscall.SIGKILL)
	n.start()
	term := n.onTerminal(t, "attach", "-it", "dns-test")
	term.expect("try pressing enter")
	term.send("\n")
	for _, step := range []struct{ line, want string }{
		{"stty size\n", "24 80"},
		{"wget -qO- http://nginx-demo.default.svc.cluster.local | grep title\n", "<title>Welcome to nginx!</title>"},
	} {
		term.expect("/ # ")
		term.settle()
		term.send(step.line)
		term.expect(step.want)
	}
	term.expect("/ # ")
	term.settle()
	term.send("exit 4\n")
	term.wait()
	eventually(t, 10*time.Second, func() error {
		if p := n.podStatuses(t, "run=dns-test"); len(p) != 1 || p[0].Phase != "Failed" {
			return fmt.Errorf("dns-test after exit 4: %v", p)
		}
		return nil
	})
	if code, _, _ := n.exec("kubectl", "get", "pod", "dns-test", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}"); code != "4" {
		t.Errorf("dns-test exit code %q", code)
	}

	// kubectl port-forward: to the pod's localhost, from a local port of kubectl's.
	pf := n.kubectl("port-forward", "deploy/nginx-demo", ":80")
	pfOut, _ := pf.StdoutPipe()
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	line, err := bufio.NewReader(pfOut).ReadString('\n')
	var local int
	if _, serr := fmt.Sscanf(line, "Forwarding from 127.0.0.1:%d -> 80", &local); err != nil || serr != nil {
		t.Fatalf("port-forward said %q (%v)", line, err)
	}
	for range 2 {
		if out, _, err := n.exec("curl", "-sS", fmt.Sprintf("http://127.0.0.1:%d/", local)); err != nil || !strings.Contains(out, "<title>Welcome to nginx!</title>") {
			t.Errorf("through port-forward: %q %v", out, err)
		}
	}

	// A container cannot read the daemon's data dir (token, CA key): it sees an empty
	// private directory there.
	if out, _, err := n.exec("kubectl", "exec", talkers[0], "--", "sh", "-c", "ls -A "+n.dataDir+"; cat "+n.dataDir+"/token"); err == nil || strings.TrimSpace(out) != "" {
		t.Errorf("a container reads the data dir: %q %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "token")); err != nil {
		t.Errorf("the token is not where the check looked: %v", err)
	}

	// minicluster exec: exit codes, stdin, and TYPE/NAME.
	_, _, err = n.exec(binary, "exec", "--data-dir", n.dataDir, talkers[0], "--", "sh", "-c", "exit 3")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("minicluster exec exit 3: %v", err)
	}
	mc := exec.Command("ip", "netns", "exec", n.netns, binary, "exec", "-i", "--data-dir", n.dataDir, "deploy/talker", "--", "sh", "-c", "cat; hostname")
	mc.Stdin = strings.NewReader("hi\n")
	if b, err := mc.CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "hi\ntalker-") {
		t.Errorf("minicluster exec -i: %q %v", b, err)
	}
}

// The e2e suite's images that the host stands in for run what the suite runs in them:
// /agnhost inside an agnhost container (its dns-suffix and dns-server-list), dig in
// jessie-dnsutils, the e2e busybox.
func TestE2EImages(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "ag", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--", "netexec")
	kubectl("run", "jd", "--image=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7", "--command", "--", "sleep", "3600")
	kubectl("run", "bb", "--image=registry.k8s.io/e2e-test-images/busybox:1.36.1-1", "--command", "--", "sleep", "3600")
	kubectl("wait", "--for=condition=Ready", "pod/ag", "pod/jd", "pod/bb", "--timeout=60s")
	for _, c := range []struct {
		pod  string
		cmd  []string
		want string
	}{
		{"ag", []string{"/agnhost", "dns-suffix"}, "default.svc.cluster.local,svc.cluster.local,cluster.local"},
		{"ag", []string{"/agnhost", "dns-server-list"}, "10.96.0.10"},
		{"jd", []string{"dig", "+short", "+time=2", "kubernetes.default.svc.cluster.local"}, "10.96.0.1\n"},
		{"bb", []string{"sh", "-c", "echo $((6*7))"}, "42\n"},
	} {
		eventually(t, 10*time.Second, func() error {
			if out, errOut, err := n.exec("kubectl", append([]string{"exec", c.pod, "--"}, c.cmd...)...); err != nil || out != c.want {
				return fmt.Errorf("%s: %v: %q %s %v, want %q", c.pod, c.cmd, out, errOut, err, c.want)
			}
			return nil
		})
	}
}
