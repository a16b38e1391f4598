package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minicluster/minicluster/node/runtime/agnhost"
)

// Spec is one container run: what the shim sets up and executes.
type Spec struct {
	Argv     []string          `json:"argv"`
	Env      []string          `json:"env"`
	Dir      string            `json:"dir,omitempty"`
	Hostname string            `json:"hostname"`
	Binds    map[string]string `json:"binds"` // target in the container → source file on the host
	Tmpfs    []string          `json:"tmpfs"` // private empty directories (also hides the data dir)
	ExitFile string            `json:"exitFile"`
	// Attach is the unix socket the shim serves attaches on.
	Attach string `json:"attach,omitempty"`
	// Stdin keeps the program's stdin open for attached clients; StdinOnce ends it when
	// the first client ends its own; TTY gives the program a terminal.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`
	// Builtin: Argv is a built-in image (minicluster agnhost|pause ...), run inside the
	// shim itself.
	Builtin bool `json:"builtin,omitempty"`
}

// ExitRecord is what the shim leaves when the program ends.
type ExitRecord struct {
	ExitCode   int32     `json:"exitCode"`
	Signal     string    `json:"signal,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Main is the container shim. The agent starts it in the pod's network namespace,
// in new mount and UTS namespaces and a session of its own, so the container outlives
// a daemon crash. It prepares the filesystem view, runs the program as its child, and
// records the exit status; it returns its own exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: minicluster shim SPEC.json")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var spec Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	// Opened before the data dir disappears behind a tmpfs.
	exitFile, err := os.OpenFile(spec.ExitFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	h, err := newHub(&spec)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if spec.Attach != "" { // bound before the data dir disappears behind a tmpfs
		// Without it the container still runs, only nobody can attach: say so in its log.
		if ln, err := listenAttach(spec.Attach); err != nil {
			(&criWriter{mu: &sync.Mutex{}, out: os.Stdout, stream: "stderr", now: time.Now}).Write([]byte("minicluster: no attach: " + err.Error() + "\n"))
		} else {
			defer ln.Close()
			go h.serve(ln)
		}
	}
	rec := run(&spec, h)
	h.end()
	out, _ := json.Marshal(rec)
	exitFile.Write(out)
	exitFile.Sync()
	exitFile.Close()
	if rec.Error != "" {
		(&criWriter{mu: &sync.Mutex{}, out: os.Stdout, stream: "stderr", now: time.Now}).Write([]byte("minicluster: " + rec.Error + "\n"))
	}
	return int(rec.ExitCode)
}

func run(spec *Spec, h *hub) ExitRecord {
	rec := ExitRecord{StartedAt: time.Now()}
	fail := func(err error) ExitRecord {
		rec.ExitCode, rec.Error, rec.FinishedAt = 128, err.Error(), time.Now()
		return rec
	}
	if err := prepareFilesystem(spec); err != nil {
		return fail(err)
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fail(fmt.Errorf("set hostname: %w", err))
	}
	if spec.Builtin && len(spec.Argv) > 1 {
		code, err := runBuiltin(spec, h)
		if err != nil {
			return fail(err)
		}
		rec.ExitCode, rec.FinishedAt = int32(code), time.Now()
		return rec
	}
	// SIGTERM reaches the program through the process group; the shim waits for it. It
	// catches rather than ignores: an ignored signal would stay ignored in the program.
	// A program on a terminal leads a session of its own: signals are passed on to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	// The agent gave the shim the log file as stdout: the program's output goes there as
	// CRI records, and to attached clients (os/exec copies through pipes, and Wait
	// drains them).
	var mu sync.Mutex
	stdout := &criWriter{mu: &mu, out: os.Stdout, stream: "stdout", now: time.Now, hub: h}
	cmd.Stdout = stdout
	cmd.Stderr = &criWriter{mu: &mu, out: os.Stdout, stream: "stderr", now: time.Now, hub: h}
	term := h.term
	switch {
	case term != nil:
		cmd.Stdin, cmd.Stdout, cmd.Stderr = h.child, h.child, h.child
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if !slices.ContainsFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
			cmd.Env = append(cmd.Env, "TERM=xterm")
		}
	case h.child != nil:
		cmd.Stdin = h.child
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", spec.Argv[0], err))
	}
	if h.child != nil {
		h.child.Close() // the program's now
	}
	copied := make(chan struct{})
	if term != nil {
		go func() {
			io.Copy(stdout, term) // ends with EIO once the program and its children are gone
			close(copied)
		}()
		go func() {
			for sig := range sigs {
				syscall.Kill(-cmd.Process.Pid, sig.(syscall.Signal))
			}
		}()
	}
	err := cmd.Wait()
	if term != nil {
		select {
		case <-copied:
		case <-time.After(time.Second): // a background child holds the terminal open
		}
	}
	rec.FinishedAt = time.Now()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			rec.ExitCode, rec.Signal = 128+int32(ws.Signal()), unix.SignalName(ws.Signal())
		} else {
			rec.ExitCode = int32(ws.ExitStatus())
		}
	} else if err != nil {
		return fail(err)
	}
	return rec
}

// prepareFilesystem makes this mount namespace private, binds the pod's files
// (/etc/resolv.conf, /etc/hosts) and mounts empty tmpfs where the pod must not see
// the host (/tmp, /run, the daemon's data dir).
func prepareFilesystem(spec *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// Read the sources before the tmpfs mounts can hide them.
	contents := map[string][]byte{}
	for target, source := range spec.Binds {
		data, err := os.ReadFile(source)
		if err != nil {
			return err
		}
		contents[target] = data
	}
	for _, dir := range spec.Tmpfs {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			continue // under an earlier tmpfs: already hidden
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	for target, data := range contents {
		if err := bindContent(target, data); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	}
	return nil
}

// bindContent puts data at target through a private copy bind-mounted over it. A target
// that is a symlink into a fresh tmpfs (/etc/resolv.conf → /run/...) gets its file made.
func bindContent(target string, data []byte) error {
	if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
		if dest, err := filepath.EvalSymlinks(filepath.Dir(target)); err == nil {
			if link, err := os.Readlink(target); err == nil {
				if !filepath.IsAbs(link) {
					link = filepath.Join(dest, link)
				}
				os.MkdirAll(filepath.Dir(link), 0o755)
				os.WriteFile(link, nil, 0o644)
			}
		}
	}
	src, err := os.CreateTemp("/tmp", ".bind-")
	if err != nil {
		return err
	}
	src.Write(data)
	src.Close()
	defer os.Remove(src.Name()) // the mount keeps the inode
	return unix.Mount(src.Name(), target, "", unix.MS_BIND, "")
}

// runBuiltin runs a built-in image (agnhost, pause) inside the shim itself: starting a
// second process per pod costs more than the rest of a pod's start. Its
// output goes through the standard descriptors into the same CRI records.
func runBuiltin(spec *Spec, h *hub) (int, error) {
	os.Clearenv()
	for _, kv := range spec.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			os.Setenv(k, v)
		}
	}
	if spec.Dir != "" {
		if err := os.Chdir(spec.Dir); err != nil {
			return 0, err
		}
	}
	logFD, err := unix.Dup(1)
	if err != nil {
		return 0, err
	}
	logFile := os.NewFile(uintptr(logFD), "log")
	var mu sync.Mutex
	var copies sync.WaitGroup
	for fd, stream := range map[int]string{1: "stdout", 2: "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		if err := unix.Dup2(int(w.Fd()), fd); err != nil {
			return 0, err
		}
		w.Close()
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(&criWriter{mu: &mu, out: logFile, stream: stream, now: time.Now, hub: h}, r)
		}()
	}
	var code int
	switch spec.Argv[1] {
	case "agnhost":
		code = agnhost.Main(spec.Argv[2:], os.Stderr)
	case "pause":
		code = agnhost.Main([]string{"pause"}, os.Stderr)
	default:
		return 0, fmt.Errorf("unknown built-in %q", spec.Argv[1])
	}
	// Close our ends of the pipes so the copies see EOF, then let them drain.
	unix.Close(1)
	unix.Close(2)
	copies.Wait()
	unix.Dup2(logFD, 1) // for the shim's own last words
	return code, nil
}
