package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"

	"slices"
	"strings"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs a command in a running container's namespaces (mount, UTS, network) with
// the container's environment and working directory, as `kubectl exec` asks, on a terminal if asked, and
// returns its exit code.
func (r *Runtime) Exec(ctx context.Context, pod *corev1.Pod, container string, command []string, o remotecommand.StreamOptions) (int, error) {
	name, err := podContainer(pod, container)
	if err != nil {
		return 0, err
	}
	c := r.State(string(pod.UID)).Containers[name]
	if c == nil || !c.Alive() {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", name))
	}
	spec, err := r.spec(string(pod.UID), name)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", name, err)
	}
	// nsenter takes the root and the working directory of the shim, which are the
	// container's.
	args := []string{"--target", strconv.Itoa(c.ShimPID), "--mount", "--uts", "--net", "--root", "--wd"}
	if u := spec.User; u != nil { // as the container's user
		args = append(args, "--setuid", strconv.Itoa(int(u.UID)), "--setgid", strconv.Itoa(int(u.GID)))
	}
	args = append(append(args, "--"), command...)
	run := exec.CommandContext(ctx, "nsenter", args...)
	run.Env = spec.Env
	if o.Tty {
		err = runOnTerminal(run, o)
	} else {
		run.Stdin, run.Stdout, run.Stderr = o.Stdin, o.Stdout, o.Stderr
		err = run.Run()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

// runOnTerminal runs cmd as the session leader of a new pseudo-terminal, copying the
// client's stdin in and the terminal's output out, and applying resizes.
func runOnTerminal(cmd *exec.Cmd, o remotecommand.StreamOptions) error {
	if !slices.ContainsFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
		cmd.Env = append(cmd.Env, "TERM=xterm")
	}
	tty, err := pty.Start(cmd)
	if err != nil {
		return err
	}
	defer tty.Close()
	forwardResizes(o.TerminalSizeQueue, func(sz remotecommand.TerminalSize) {
		pty.Setsize(tty, &pty.Winsize{Cols: sz.Width, Rows: sz.Height})
	})
	if o.Stdin != nil {
		go io.Copy(tty, o.Stdin)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(o.Stdout, tty) // ends with EIO once the command and its children are gone
		close(copied)
	}()
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(time.Second): // a background child holds the terminal open
	}
	return err
}
