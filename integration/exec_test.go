//go:build integration

package integration

import (
	"errors"
	"os/exec"
	"strings"
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
