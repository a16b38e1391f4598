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
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minicluster/minicluster/node/runtime/agnhost"
)

// Spec is one container run: what the shim sets up and executes.
type Spec struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir,omitempty"`
	Hostname string   `json:"hostname"`
	// Root is an empty directory on the host the container's root is built at (in the
	// shim's mount namespace only); empty: the host's root, as it is.
	Root  string            `json:"root,omitempty"`
	Binds map[string]string `json:"binds"` // target in the container → source file on the host, copied
	Tmpfs []string          `json:"tmpfs"` // private empty directories (also hides the data dir)
	// Image, when set, is the image's root filesystem: the container's root is it under
	// a writable layer (Tmpfs then does not apply: the host is not in view).
	Image    string  `json:"image,omitempty"`
	Mounts   []Mount `json:"mounts,omitempty"`
	ExitFile string  `json:"exitFile"`
	// User is who the program runs as (nil: root).
	User *User `json:"user,omitempty"`
	// ReadOnlyRoot makes the container's root read-only (its volumes stay as they are);
	// NoNewPrivs sets no_new_privs (allowPrivilegeEscalation: false).
	ReadOnlyRoot bool `json:"readOnlyRoot,omitempty"`
	NoNewPrivs   bool `json:"noNewPrivs,omitempty"`
	// Started, when set, is a descriptor the shim writes one byte to once the program
	// runs (its filesystem, user and cgroups set), then closes.
	Started int `json:"started,omitempty"`
	// Cgroups are the container's cgroup directories: the shim joins them before the
	// program starts, so the program and everything it starts are limited.
	Cgroups []string `json:"cgroups,omitempty"`
	// Attach is the unix socket the shim serves attaches on.
	Attach string `json:"attach,omitempty"`
	// Stdin keeps the program's stdin open for attached clients; StdinOnce ends it when
	// the first client ends its own; TTY gives the program a terminal.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`
	// Builtin: Argv is a built-in image (minicluster agnhost|pause ...), run by this
	// binary started again inside the container.
	Builtin bool `json:"builtin,omitempty"`
	// Caps are the capabilities the program may have (securityContext's names, without
	// CAP_); Privileged gives it the host's devices and a writable /sys too.
	Caps       []string `json:"caps"`
	Privileged bool     `json:"privileged,omitempty"`
}

// User is a container's user and groups (securityContext runAsUser, runAsGroup,
// supplementalGroups).
type User struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// ExitRecord is what the shim leaves when the program ends.
type ExitRecord struct {
	ExitCode int32  `json:"exitCode"`
	Signal   string `json:"signal,omitempty"`
	// Reason, when set, is the kubelet's reason for the end (OOMKilled).
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Main is the container shim. The agent starts it in the pod's network namespace,
// in new mount and UTS namespaces and a session of its own, so the container outlives
// a daemon crash. It prepares the filesystem view, runs the program as its child, and
// records the exit status; it returns its own exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--builtin" {
		return builtin(args[1:], stderr)
	}
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
	if spec.Started > 0 {
		unix.CloseOnExec(spec.Started) // not the program's
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
	rec := run(&spec, h, os.Args[:len(os.Args)-len(args)])
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

func run(spec *Spec, h *hub, self []string) ExitRecord {
	rec := ExitRecord{StartedAt: time.Now()}
	fail := func(err error) ExitRecord {
		rec.ExitCode, rec.Error, rec.FinishedAt = 128, err.Error(), time.Now()
		return rec
	}
	for _, dir := range spec.Cgroups {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fail(fmt.Errorf("join cgroup %s: %w", dir, err))
		}
	}
	if err := prepareFilesystem(spec); err != nil {
		return fail(err)
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fail(fmt.Errorf("set hostname: %w", err))
	}
	// Capabilities and no_new_privs are a thread's, inherited by what it starts: the
	// program is started from this goroutine, kept on this thread (which the shim
	// itself then no longer needs).
	goruntime.LockOSThread()
	if err := LimitCaps(spec.Caps); err != nil {
		return fail(fmt.Errorf("capabilities: %w", err))
	}
	if spec.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fail(fmt.Errorf("no_new_privs: %w", err))
		}
	}
	// What the program leaves behind comes to the shim, which reaps it.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	started := func() {
		if spec.Started > 0 {
			unix.Write(spec.Started, []byte{1})
			unix.Close(spec.Started)
			spec.Started = 0
		}
	}
	defer started() // a failure: the agent stops waiting, and reads the exit record
	// SIGTERM reaches the program through the process group; the shim waits for it. It
	// catches rather than ignores: an ignored signal would stay ignored in the program.
	// A program on a terminal leads a session of its own: signals are passed on to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	var cmd *exec.Cmd
	if spec.Builtin { // this binary again, inside the container (minicluster agnhost|pause ...)
		cmd = &exec.Cmd{Path: "/proc/self/exe", Args: append(slices.Clone(self), append([]string{"--builtin"}, spec.Argv[1:]...)...)}
	} else {
		// A bare program name is looked up on the container's PATH, inside its root.
		for _, kv := range spec.Env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				os.Setenv("PATH", v)
			}
		}
		cmd = exec.Command(spec.Argv[0], spec.Argv[1:]...)
		if cmd.Err != nil {
			return fail(fmt.Errorf("start %s: %w", spec.Argv[0], cmd.Err))
		}
	}
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	// The agent gave the shim the log file as stdout: the program's output goes there as
	// CRI records, and to attached clients.
	var mu sync.Mutex
	stdout := &criWriter{mu: &mu, out: os.Stdout, stream: "stdout", now: time.Now, hub: h}
	stderr := &criWriter{mu: &mu, out: os.Stdout, stream: "stderr", now: time.Now, hub: h}
	term := h.term
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if u := spec.User; u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	var copies sync.WaitGroup
	copyFrom := func(w io.Writer, r *os.File) {
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(w, r) // a terminal ends with EIO once the program and its children are gone
			r.Close()
		}()
	}
	var ours []*os.File // the program's ends, closed here once it has them
	if term != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = h.child, h.child, h.child
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
		if !slices.ContainsFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
			cmd.Env = append(cmd.Env, "TERM=xterm")
		}
	} else {
		if h.child != nil {
			cmd.Stdin = h.child
		}
		for _, out := range []struct {
			w   io.Writer
			set *io.Writer
		}{{stdout, &cmd.Stdout}, {stderr, &cmd.Stderr}} {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			*out.set = w
			ours = append(ours, w)
			copyFrom(out.w, r)
		}
	}
	if h.child != nil {
		ours = append(ours, h.child)
	}
	err := cmd.Start()
	for _, f := range ours {
		f.Close()
	}
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", spec.Argv[0], err))
	}
	started()
	if term != nil {
		copyFrom(stdout, term)
		go func() {
			for sig := range sigs {
				syscall.Kill(-cmd.Process.Pid, sig.(syscall.Signal))
			}
		}()
	}
	ws := reap(cmd.Process.Pid)
	rec.FinishedAt = time.Now()
	if os.Getpid() == 1 {
		// The container ends with its program, as with any runtime: what it left
		// running in its PID namespace goes too, and with it the output's last writers.
		unix.Kill(-1, unix.SIGKILL)
		reap(-1) // until none is left
	}
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second): // a background child (in a shared PID namespace) holds the output open
	}
	if ws.Signaled() {
		rec.ExitCode, rec.Signal = 128+int32(ws.Signal()), unix.SignalName(ws.Signal())
	} else {
		rec.ExitCode = int32(ws.ExitStatus())
	}
	return rec
}

// reap waits for the program (pid) to end, reaping whatever else ends meanwhile (the
// shim is its container's init, or their subreaper), and returns its status; with
// pid -1, until no child is left.
func reap(pid int) unix.WaitStatus {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if got == pid || errors.Is(err, unix.ECHILD) {
			return ws
		}
	}
}

// AsAgnhost runs agnhost when this binary was started by that name (the /agnhost of a
// built-in image's container, run by kubectl exec); false otherwise.
func AsAgnhost() (int, bool) {
	if filepath.Base(os.Args[0]) != "agnhost" {
		return 0, false
	}
	return builtin(append([]string{"agnhost"}, os.Args[1:]...), os.Stderr), true
}

// builtin runs a built-in image (agnhost, pause) as the container's program: this
// binary started again inside the container, its output the shim's pipes.
func builtin(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: minicluster-shim --builtin agnhost|pause ARGS...")
		return 2
	}
	switch args[0] {
	case "agnhost":
		return agnhost.Main(args[1:], stderr)
	case "pause":
		return agnhost.Main([]string{"pause"}, stderr)
	}
	fmt.Fprintf(stderr, "unknown built-in %q\n", args[0])
	return 2
}

// prepareFilesystem gives the container a root of its own, built in this (private)
// mount namespace on a tmpfs at spec.Root: every top-level directory of the host as an
// overlay whose writes land in that tmpfs (so the container can write anywhere, and
// nothing it writes reaches the host), or the image's root under such a layer; /proc,
// /sys and /dev (mountKernelFS); empty tmpfs where it must not see the host (/tmp, /run, the daemon's data dir), the pod's
// files (/etc/resolv.conf, /etc/hosts) and its volumes. It then pivots into that root,
// so nothing outside it is reachable, and changes to the working directory.
func prepareFilesystem(spec *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// Read and open what comes from the host before the host disappears.
	contents := map[string][]byte{}
	mounted := map[string]bool{}
	for _, m := range spec.Mounts {
		mounted[filepath.Clean(m.Target)] = true
	}
	for target, source := range spec.Binds {
		// A volume the container mounts there wins, as with the kubelet (which then
		// does not manage /etc/hosts); writing the pod's file would go into the volume —
		// a hostPath of the node's own /etc/hosts.
		if mounted[filepath.Clean(target)] {
			continue
		}
		data, err := os.ReadFile(source)
		if err != nil {
			return err
		}
		contents[target] = data
	}
	sources := make([]*os.File, len(spec.Mounts))
	for i, m := range spec.Mounts {
		f, err := openSource(m)
		if err != nil {
			return fmt.Errorf("volume mount %s: %w", m.Target, err)
		}
		defer f.Close()
		sources[i] = f
	}
	fs := spec.Root + "/fs"
	var overlays []string // a catalog image's root: one overlay per host directory
	build := func() (err error) {
		overlays, err = buildRoot(spec.Root, spec.Tmpfs)
		return err
	}
	if spec.Image != "" {
		build = func() error { return buildImageRoot(spec.Root, spec.Image) }
	}
	if err := build(); err != nil {
		return err
	}
	root, err := os.OpenFile(fs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := mountKernelFS(root, spec.Privileged); err != nil {
		return err
	}
	// Bound before the pivot: a bind's source must be in this namespace's tree, and the
	// host's root leaves it with the pivot.
	for i, m := range spec.Mounts {
		if err := mountVolume(root, m, sources[i]); err != nil {
			return fmt.Errorf("volume mount %s: %w", m.Target, err)
		}
	}
	if err := pivot(fs); err != nil {
		return err
	}
	for target, data := range contents {
		if err := putFile(target, data); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	}
	if spec.ReadOnlyRoot {
		if err := readOnlyRoot(overlays); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return os.Chdir(dir)
}

// Mount is one volume mount of a container.
type Mount struct {
	// Source is the volume's directory (or file) on the host; SubPath a path inside it,
	// resolved within it (symlinks cannot leave it) and made a directory if missing.
	Source  string `json:"source"`
	SubPath string `json:"subPath,omitempty"`
	// Target is where it appears in the container (symlinks resolve inside the
	// container's root).
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// openSource opens what a mount binds, by descriptor: the volume, or the subPath inside
// it, resolved by the kernel beneath the volume (a symlink or ".." that would leave it
// is an error, as in the kubelet).
func openSource(m Mount) (*os.File, error) {
	root, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil || m.SubPath == "" {
		return root, err
	}
	defer root.Close()
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(int(root.Fd()), m.SubPath, how)
	if errors.Is(err, unix.ENOENT) { // made as the kubelet does: directories, within the volume
		parts := strings.Split(filepath.Clean(m.SubPath), "/")
		for i := range parts {
			dir := strings.Join(parts[:i+1], "/")
			if merr := unix.Mkdirat(int(root.Fd()), dir, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				break // a symlink in the way: openat2 below says what is wrong
			}
			// Each step resolved beneath the volume, so a symlink cannot lead a mkdir out.
			if pfd, perr := unix.Openat2(int(root.Fd()), dir, how); perr == nil {
				unix.Close(pfd)
			} else {
				break
			}
		}
		fd, err = unix.Openat2(int(root.Fd()), m.SubPath, how)
	}
	if errors.Is(err, unix.EXDEV) {
		return nil, fmt.Errorf("subPath %s resolves outside the volume", m.SubPath)
	}
	if err != nil {
		return nil, fmt.Errorf("subPath %s: %w", m.SubPath, err)
	}
	return os.NewFile(uintptr(fd), m.SubPath), nil
}

// inRoot resolves path as if root were "/" (symlinks cannot leave it).
var inRoot = &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}

// mountVolume binds an opened source at its target in the container's root (open as
// root), making the target, within the root, as a directory or an empty file to match
// the source.
func mountVolume(root *os.File, m Mount, src *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return err
	}
	tfd, err := makeTarget(root, m.Target, st.Mode&unix.S_IFMT == unix.S_IFDIR)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	proc := func(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }
	if err := unix.Mount(proc(int(src.Fd())), proc(tfd), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if !m.ReadOnly {
		return nil
	}
	mounted, err := unix.Openat2(int(root.Fd()), m.Target, inRoot) // the new mount, over tfd
	if err != nil {
		return err
	}
	defer unix.Close(mounted)
	return unix.Mount("", proc(mounted), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
}

// makeTarget opens target in the container's root (open as root; symlinks resolve
// inside it), making it and its parents when missing: a directory, or an empty file.
func makeTarget(root *os.File, target string, dir bool) (int, error) {
	target = filepath.Clean("/" + target)
	parts := strings.Split(strings.TrimPrefix(target, "/"), "/")
	for i := range parts {
		path := strings.Join(parts[:i+1], "/")
		if fd, err := unix.Openat2(int(root.Fd()), path, inRoot); err == nil {
			unix.Close(fd)
			continue
		}
		parent, err := unix.Openat2(int(root.Fd()), "/"+strings.Join(parts[:i], "/"), inRoot)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", "/"+strings.Join(parts[:i], "/"), err)
		}
		if i == len(parts)-1 && !dir {
			fd, err := unix.Openat(parent, parts[i], unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		} else {
			err = unix.Mkdirat(parent, parts[i], 0o755)
		}
		unix.Close(parent)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("make %s: %w", path, err)
		}
	}
	fd, err := unix.Openat2(int(root.Fd()), target, inRoot)
	if err != nil {
		return -1, fmt.Errorf("open target %s: %w", target, err)
	}
	return fd, nil
}

// buildRoot makes the container's root at root/fs on a fresh tmpfs at root. Each
// top-level directory of the host is an overlay with its upper layer in that tmpfs; the
// paths in empty are empty tmpfs; symlinks are copied; /proc, /sys and /dev are left
// for mountKernelFS.
// An overlay the kernel refuses falls back to a bind of the host's directory.
func buildRoot(root string, empty []string) ([]string, error) {
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
		return nil, fmt.Errorf("container root: %w", err)
	}
	fs := root + "/fs"
	if err := os.Mkdir(fs, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(fs, fs, "", unix.MS_BIND, ""); err != nil { // pivot_root wants a mount point
		return nil, err
	}
	var overlays []string
	entries, err := os.ReadDir("/")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		host, dst := "/"+e.Name(), fs+"/"+e.Name()
		switch {
		case e.Type()&os.ModeSymlink != 0:
			link, err := os.Readlink(host)
			if err != nil {
				return nil, err
			}
			if err := os.Symlink(link, dst); err != nil {
				return nil, err
			}
			continue
		case !e.IsDir(), e.Name() == "lost+found":
			continue
		}
		info, err := os.Stat(host)
		if err != nil {
			return nil, err
		}
		if err := os.Mkdir(dst, info.Mode().Perm()|info.Mode()&(os.ModeSticky)); err != nil {
			return nil, err
		}
		switch {
		case e.Name() == "proc" || e.Name() == "sys" || e.Name() == "dev": // mountKernelFS's
		case slices.Contains(empty, host):
			if err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
				return nil, fmt.Errorf("tmpfs on %s: %w", host, err)
			}
		default:
			upper, work := root+"/rw/"+e.Name()+"/upper", root+"/rw/"+e.Name()+"/work"
			if err := errors.Join(os.MkdirAll(upper, 0o755), os.MkdirAll(work, 0o755)); err != nil {
				return nil, err
			}
			if err := whiteOut(upper, host, empty); err != nil {
				return nil, err
			}
			opts := "lowerdir=" + host + ",upperdir=" + upper + ",workdir=" + work
			overlays = append(overlays, host)
			if err := unix.Mount("overlay", dst, "overlay", 0, opts); err != nil {
				if err := unix.Mount(host, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
					return nil, fmt.Errorf("%s: %w", host, err)
				}
			}
		}
	}
	// Deeper hidden paths (the daemon's data dir) are whited out of their overlay; where
	// the kernel refused the overlay they get an empty tmpfs over them instead.
	for _, dir := range empty {
		if strings.Count(dir, "/") < 2 {
			continue
		}
		if _, err := os.Stat(fs + dir); err != nil {
			continue // under an empty one already, or absent
		}
		if err := unix.Mount("tmpfs", fs+dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return nil, fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	return overlays, nil
}

// whiteOut removes the paths in hidden below the host directory top from the overlay
// whose upper layer is upper: a whiteout (a 0/0 character device) at each, in
// directories made with the modes and owners of the host's. The container then has no
// such path at all — no mount over it that it could undo (issue 19: a pod that could
// unmount the tmpfs over the data dir read the API token).
func whiteOut(upper, top string, hidden []string) error {
	for _, dir := range hidden {
		rel, err := filepath.Rel(top, dir)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		parts := strings.Split(rel, "/")
		for i := range parts[:len(parts)-1] {
			sub := filepath.Join(parts[:i+1]...)
			info, err := os.Stat(filepath.Join(top, sub))
			if err != nil {
				break // absent on the host: nothing to hide
			}
			if err := os.Mkdir(filepath.Join(upper, sub), info.Mode().Perm()); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			if err := errors.Join(os.Chown(filepath.Join(upper, sub), int(st.Uid), int(st.Gid)),
				os.Chmod(filepath.Join(upper, sub), info.Mode().Perm()|info.Mode()&os.ModeSticky)); err != nil {
				return err
			}
		}
		if _, err := os.Lstat(dir); err != nil {
			continue
		}
		if err := unix.Mknod(filepath.Join(upper, rel), unix.S_IFCHR, 0); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("white out %s: %w", dir, err)
		}
	}
	return nil
}

// buildImageRoot makes the container's root at root/fs: the image's root filesystem
// (read-only) under a writable layer in a fresh tmpfs at root.
func buildImageRoot(root, image string) error {
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
		return fmt.Errorf("container root: %w", err)
	}
	fs, upper, work := root+"/fs", root+"/rw/upper", root+"/rw/work"
	if err := errors.Join(os.Mkdir(fs, 0o755), os.MkdirAll(upper, 0o755), os.MkdirAll(work, 0o755)); err != nil {
		return err
	}
	if err := unix.Mount("overlay", fs, "overlay", 0, "lowerdir="+image+",upperdir="+upper+",workdir="+work); err != nil {
		return fmt.Errorf("image root: %w", err)
	}
	return nil
}

// pivot makes dir the root of this mount namespace and lets go of the old one.
func pivot(dir string) error {
	if err := os.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	return os.Chdir("/")
}

// readOnlyRoot remounts the root read-only, and the overlays of a catalog image's root
// (unless a volume covers one); volumes, /proc, /sys, /dev and /tmp stay as they are.
func readOnlyRoot(overlays []string) error {
	ro := func(p string) error { return unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "") }
	if err := ro("/"); err != nil {
		return err
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	top := map[string]string{} // mount point → the filesystem type mounted there last
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			if sep := slices.Index(f, "-"); sep > 0 && sep+1 < len(f) {
				top[f[4]] = f[sep+1]
			}
		}
	}
	for _, p := range overlays {
		if top[p] == "overlay" {
			if err := ro(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// putFile writes data at target as a file of the container's own (a symlink there, say
// /etc/resolv.conf into /run, is replaced).
func putFile(target string, data []byte) error {
	if fi, err := os.Lstat(target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(target)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	return os.WriteFile(target, data, 0o644)
}
