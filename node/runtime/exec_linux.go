package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/remotecommand"

	"golang.org/x/sys/unix"

	"github.com/minicluster/minicluster/node/runtime/shim"
)

// Exec runs a command in a running container, as `kubectl exec` asks, on a terminal if
// asked, and returns its exit code.
func (r *Runtime) Exec(ctx context.Context, pod *corev1.Pod, container string, command []string, o remotecommand.StreamOptions) (int, error) {
	name, err := podContainer(pod, container)
	if err != nil {
		return 0, err
	}
	return r.ExecIn(ctx, string(pod.UID), name, command, o)
}

// ExecIn runs command in container name of pod uid as the container's own processes
// run: in its namespaces (mount, UTS, network, PID), root and working directory, with
// its environment, user, capabilities and no_new_privs. A command that cannot be
// started ends with 126 (not executable) or 127 (not found), as in a shell, its reason
// on stderr.
func (r *Runtime) ExecIn(ctx context.Context, uid, name string, command []string, o remotecommand.StreamOptions) (int, error) {
	c := r.State(uid).Containers[name]
	if c == nil || !c.Alive() {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", name))
	}
	spec, err := r.spec(uid, name)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", name, err)
	}
	run := exec.CommandContext(ctx, "/"+command[0], command[1:]...) // its path is found inside the container
	run.Args[0], run.Env = command[0], spec.Env
	run.SysProcAttr = &syscall.SysProcAttr{}
	if u := spec.User; u != nil {
		run.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	var tty *os.File
	start := func() (err error) {
		if run.Path, err = lookPath(command[0], spec.Env); err != nil {
			return err
		}
		if !o.Tty {
			run.Stdin, run.Stdout, run.Stderr = o.Stdin, o.Stdout, o.Stderr
			return run.Start()
		}
		if !slices.ContainsFunc(run.Env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
			run.Env = append(run.Env, "TERM=xterm")
		}
		tty, err = pty.Start(run) // the container's own pseudo-terminals
		return err
	}
	if err := enter(c.ShimPID, spec, start); err != nil {
		var notFound *exec.Error
		if errors.As(err, &notFound) {
			fmt.Fprintf(errWriter(o), "exec: %q: %v\n", command[0], notFound.Err)
			if errors.Is(notFound.Err, exec.ErrNotFound) {
				return 127, nil
			}
			return 126, nil
		}
		return 0, err
	}
	if tty != nil {
		err = onTerminal(run, tty, o)
	} else {
		err = run.Wait()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

func errWriter(o remotecommand.StreamOptions) io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	if o.Stdout != nil {
		return o.Stdout
	}
	return io.Discard
}

// enter runs start on a thread of its own moved into the namespaces, root and working
// directory of the process pid (a container's shim), limited to the container's
// capabilities and no_new_privs: what start starts is born there. The thread is never
// given back (it ends with its goroutine).
func enter(pid int, spec *shim.Spec, start func() error) error {
	proc := fmt.Sprintf("/proc/%d/", pid)
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(path string) (*os.File, error) {
		f, err := os.Open(proc + path)
		if err == nil {
			files = append(files, f)
		}
		return f, err
	}
	type ns struct {
		file string
		flag int
	}
	var nss []*os.File
	var flags []int
	for _, n := range []ns{{"ns/uts", unix.CLONE_NEWUTS}, {"ns/ipc", unix.CLONE_NEWIPC}, {"ns/net", unix.CLONE_NEWNET}, {"ns/pid", unix.CLONE_NEWPID}, {"ns/mnt", unix.CLONE_NEWNS}} {
		f, err := open(n.file)
		if err != nil {
			return fmt.Errorf("container's namespaces: %w", err)
		}
		nss, flags = append(nss, f), append(flags, n.flag)
	}
	root, err := open("root")
	if err != nil {
		return err
	}
	cwd, err := open("cwd")
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread is the container's now
		errc <- func() error {
			// A thread of its own filesystem context, so it alone changes mount namespace.
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			for i, f := range nss {
				if err := unix.Setns(int(f.Fd()), flags[i]); err != nil {
					return fmt.Errorf("enter %s: %w", filepath.Base(f.Name()), err)
				}
			}
			if err := errors.Join(unix.Fchdir(int(root.Fd())), unix.Chroot("."), unix.Fchdir(int(cwd.Fd()))); err != nil {
				return fmt.Errorf("enter the container's root: %w", err)
			}
			if err := shim.LimitCaps(spec.Caps); err != nil {
				return err
			}
			if spec.NoNewPrivs {
				if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
					return err
				}
			}
			return start()
		}()
	}()
	return <-errc
}

// lookPath finds a command as the container's shell would: a path as it is, a bare
// name on the container's PATH (its environment's, else the usual one). It runs on a
// thread inside the container's root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

// onTerminal waits for cmd, running on the pseudo-terminal tty: the client's stdin goes
// in, the terminal's output out, and resizes are applied.
func onTerminal(cmd *exec.Cmd, tty *os.File, o remotecommand.StreamOptions) error {
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
	err := cmd.Wait()
	select {
	case <-copied:
	case <-time.After(time.Second): // a background child holds the terminal open
	}
	return err
}
