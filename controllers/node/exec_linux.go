package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Exec runs cmd in a running container's namespaces (mount, UTS, network) with the
// container's environment, as `kubectl exec` asks, and returns its exit code.
func (a *Agent) Exec(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	name, err := logContainer(pod, container)
	if err != nil {
		return 0, err
	}
	c := a.loadState(string(pod.UID)).Containers[name]
	if c == nil || c.ShimPID == 0 || c.Exit != nil || procStart(c.ShimPID) != c.ShimStart {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", name))
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c.ShimPID))
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", name, err)
	}
	args := append([]string{"--target", strconv.Itoa(c.ShimPID), "--mount", "--uts", "--net", "--"}, cmd...)
	run := exec.CommandContext(ctx, "nsenter", args...)
	for _, kv := range bytes.Split(env, []byte{0}) {
		if len(kv) > 0 {
			run.Env = append(run.Env, string(kv))
		}
	}
	run.Stdin, run.Stdout, run.Stderr = stdin, stdout, stderr
	err = run.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}
