package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/minicluster/minicluster/node/images"
	"github.com/minicluster/minicluster/node/runtime/shim"
	"github.com/minicluster/minicluster/node/sandbox"
	"github.com/minicluster/minicluster/node/sysctl"
)

// Config configures the runtime.
type Config struct {
	// DataDir holds per-pod state and logs under pods/<uid>, pulled images under
	// images/, and images.yaml (hidden from containers).
	DataDir string
	// InsecureRegistries are reached over plain HTTP (host:port prefixes).
	InsecureRegistries []string
	// ImageGCHigh and ImageGCLow are the kubelet's image GC thresholds: past High percent
	// of the disk used, images no container uses go until below Low (defaults 85, 80).
	ImageGCHigh, ImageGCLow int
	Log                     *slog.Logger
}

// Runtime runs containers: each in a shim of its own (this binary, `minicluster shim`),
// in its pod's network namespace and new mount and UTS namespaces, in a session of its
// own so it outlives the daemon. A container's record lives on disk, so a restarted
// daemon adopts running containers instead of starting them twice.
type Runtime struct {
	dataDir string
	self    string   // this binary: built-in images
	shim    []string // the shim's command, before its spec
	catalog *catalog
	images  *images.Store
	cgroups *cgroups
	// image garbage collection thresholds, percent of the disk
	gcHigh, gcLow int
	log           *slog.Logger
	exits         chan string // keys of pods one of whose shims this daemon started has ended

	mu       sync.Mutex
	children map[int]string // shim PID → pod key, for the shims this daemon started
}

// New builds the runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("runtime: no data dir")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cat, err := newCatalog(self, filepath.Join(cfg.DataDir, "images.yaml"))
	if err != nil {
		return nil, err
	}
	// The small minicluster-shim beside this binary when there is one (make build
	// builds it): a pod then does not pay for the daemon's packages, ~10 ms of CPU and
	// ~2 MiB each; else this binary's shim command.
	shimCmd := []string{self, "shim"}
	if small := filepath.Join(filepath.Dir(self), "minicluster-shim"); unix.Access(small, unix.X_OK) == nil {
		shimCmd = []string{small}
	}
	store, err := images.New(images.Config{Dir: filepath.Join(cfg.DataDir, "images"), Insecure: cfg.InsecureRegistries, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	cg := detectCgroups()
	if cg.memory == "" || cg.cpu == "" {
		cfg.Log.Warn("no cgroup memory or cpu controller: containers' resource limits are not enforced", "memory", cg.memory, "cpu", cg.cpu)
	}
	if cfg.ImageGCHigh == 0 {
		cfg.ImageGCHigh, cfg.ImageGCLow = 85, 80
	}
	return &Runtime{dataDir: cfg.DataDir, self: self, shim: shimCmd, catalog: cat, images: store, cgroups: cg, log: cfg.Log,
		gcHigh: cfg.ImageGCHigh, gcLow: cfg.ImageGCLow,
		exits: make(chan string, 1024), children: map[int]string{}}, nil
}

// Exits delivers the key (namespace/name) of a pod each time one of the shims this
// daemon started ends.
func (r *Runtime) Exits() <-chan string { return r.exits }

// imageGCPeriod is how often the image store's disk is looked at (the kubelet's: 5 min).
var imageGCPeriod = 5 * time.Minute

// Run reaps the shims this daemon started, and collects unused images when the disk
// fills, until ctx is cancelled.
func (r *Runtime) Run(ctx context.Context) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	// A shim can end between its start and its registration: look now and then too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	gc := time.NewTicker(imageGCPeriod)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sig:
		case <-tick.C:
		case <-gc.C:
			removed, err := r.images.GC(r.gcHigh, r.gcLow, r.imageInUse)
			for _, id := range removed {
				r.log.Info("image garbage-collected", "image", id)
			}
			if err != nil {
				r.log.Warn("image garbage collection", "err", err)
			}
		}
		r.reap()
	}
}

// imageInUse reports whether a container of a pod on the node runs in img's root.
func (r *Runtime) imageInUse(img *images.Image) bool {
	return ImageInUse(r.dataDir, r.images.RootFS(img))
}

// ImageInUse reports whether a container of a pod under dataDir runs in the image root.
func ImageInUse(dataDir, root string) bool {
	specs, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", "*", "spec.json"))
	for _, p := range specs {
		var spec shim.Spec
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &spec) == nil && spec.Image == root {
			return true
		}
	}
	return false
}

// reap collects the exit of every ended shim of ours (and only ours: other children,
// such as nft or nsenter, are waited for by whoever started them).
func (r *Runtime) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, key := range r.children {
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid || errors.Is(err, unix.ECHILD) {
			delete(r.children, pid)
			select {
			case r.exits <- key:
			default: // the agent's periodic look finds it
			}
		}
	}
}

// Owns reports whether pid is a shim this daemon started (and so reaps, and reports on
// Exits); an adopted one must be polled.
func (r *Runtime) Owns(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.children[pid]
	return ok
}

// ContainerState is the record of one container, kept on disk so a restarted daemon
// adopts running containers instead of starting them twice.
type ContainerState struct {
	ShimPID      int              `json:"shimPID"`
	ShimStart    uint64           `json:"shimStart"` // /proc start time: tells a reused PID apart
	RestartCount int32            `json:"restartCount"`
	StartedAt    time.Time        `json:"startedAt"`
	Exit         *shim.ExitRecord `json:"exit,omitempty"` // the current run's end, once it ended
	Last         *shim.ExitRecord `json:"last,omitempty"` // the previous run's end
	NextStart    time.Time        `json:"nextStart"`      // not before, after a crash (back-off)
	// Waiting explains why there is no process (image unavailable); not persisted.
	Waiting, Message string `json:"-"`
}

// PodState is every container of one pod.
type PodState struct {
	Containers map[string]*ContainerState `json:"containers"`
}

func podDir(dataDir, uid string) string { return filepath.Join(dataDir, "pods", uid) }

func (r *Runtime) podDir(uid string) string { return podDir(r.dataDir, uid) }

// State reads the record of pod uid's containers (empty when it has none).
func (r *Runtime) State(uid string) *PodState { return loadState(r.dataDir, uid) }

func loadState(dataDir, uid string) *PodState {
	st := &PodState{Containers: map[string]*ContainerState{}}
	if data, err := os.ReadFile(filepath.Join(podDir(dataDir, uid), "state.json")); err == nil {
		json.Unmarshal(data, st)
	}
	if st.Containers == nil {
		st.Containers = map[string]*ContainerState{}
	}
	return st
}

// SaveState writes the record of pod uid's containers.
func (r *Runtime) SaveState(uid string, st *PodState) error {
	data, _ := json.Marshal(st)
	if err := os.MkdirAll(r.podDir(uid), 0o700); err != nil {
		return err
	}
	path := filepath.Join(r.podDir(uid), "state.json")
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// procStart is field 22 of /proc/<pid>/stat (0 when the process is gone).
func procStart(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// Alive reports whether the container's current run is going on.
func (c *ContainerState) Alive() bool {
	return c.ShimPID > 0 && c.Exit == nil && procStart(c.ShimPID) == c.ShimStart && c.ShimStart != 0
}

// RootUsage is how much the run holds in its writable layer: what its root's file
// system has in use (the overlay reports its upper layer, the run's own tmpfs), seen
// through the shim, which lives in that root.
func (r *Runtime) RootUsage(c *ContainerState) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(fmt.Sprintf("/proc/%d/root/", c.ShimPID), &st); err != nil {
		return 0, err
	}
	if !c.Alive() { // the PID is someone else's now
		return 0, fmt.Errorf("run %d ended", c.ShimPID)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// CollectExit notes the end of a run whose shim is gone.
func (r *Runtime) CollectExit(uid, name string, c *ContainerState) {
	if c.ShimPID == 0 || c.Exit != nil || c.Alive() {
		return
	}
	var rec shim.ExitRecord
	data, err := os.ReadFile(filepath.Join(r.podDir(uid), name, "exit.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil {
		rec = shim.ExitRecord{ExitCode: 137, Signal: "SIGKILL", Error: "the container's shim vanished", StartedAt: c.StartedAt, FinishedAt: time.Now()}
	}
	if rec.ExitCode == 137 && r.cgroups.oomKilled(uid, name) {
		rec.Reason = "OOMKilled"
	}
	c.Exit = &rec
}

// Container is one container run as Start needs it.
type Container struct {
	PodKey, PodUID, Name string
	// Netns is the pod's network namespace.
	Netns string
	// IPC is the bound IPC namespace its containers share (PodIPC; "": the node's, hostIPC).
	IPC       string
	Argv, Env []string
	Dir       string
	Hostname  string
	// Hosts and ResolvConf are the content of the container's /etc/hosts and
	// /etc/resolv.conf.
	Hosts, ResolvConf     string
	Stdin, StdinOnce, TTY bool
	// Mounts are the container's volume mounts, in the pod's order.
	Mounts []shim.Mount
	// Resources are enforced with cgroups.
	Resources corev1.ResourceRequirements
	// User is who the container's processes run as (nil: root).
	User *shim.User
	// ReadOnlyRoot and NoNewPrivs: securityContext's readOnlyRootFilesystem and
	// allowPrivilegeEscalation: false.
	ReadOnlyRoot, NoNewPrivs bool
	// RootFS, when set, is the image's root filesystem the container runs in (under a
	// writable layer of its own); else it runs in a view of the host's.
	RootFS string
	// Caps are its capabilities (securityContext's names); Privileged gives it the
	// host's devices and /sys too.
	Caps       []string
	Privileged bool
	// PID is the PID namespace it runs in: its own (""), the node's ("host"), or that of
	// another container of the pod ("container:NAME", which must be running).
	PID string
	// TerminationMessagePath, when set, is where the container finds an empty file of
	// its run's own (0666, as the kubelet makes it), read by TerminationMessage.
	TerminationMessagePath string
}

// PodInit is the name of the record of a pod's init process, which holds the PID
// namespace its containers share (shareProcessNamespace); no container can have it.
const PodInit = "POD"

// PodInitContainer is the pod's init process, given what the pod's containers share
// (its key, netns, hostname and files): the built-in pause, in a PID namespace of its own.
func (r *Runtime) PodInitContainer(pod Container) Container {
	return Container{PodKey: pod.PodKey, PodUID: pod.PodUID, Netns: pod.Netns, IPC: pod.IPC, Hostname: pod.Hostname,
		Hosts: pod.Hosts, ResolvConf: pod.ResolvConf, Name: PodInit, Argv: []string{r.self, "pause"}}
}

// Resolve gives the program a container runs, from its image and command, or
// ErrImageUnavailable.
func (r *Runtime) Resolve(ctr *corev1.Container) ([]string, error) { return r.catalog.resolve(ctr) }

// Cataloged reports whether an image runs from the host (built in, the host's busybox
// or nginx, images.yaml) rather than from the image store.
func (r *Runtime) Cataloged(image string) bool {
	_, ok := r.catalog.images[ImageName(image)]
	return ok
}

// Images is the node's image store.
func (r *Runtime) Images() *images.Store { return r.images }

// Start starts a run of ctr (the next, if c has run before), recording it in c.
func (r *Runtime) Start(ctr Container, c *ContainerState) error {
	dir := filepath.Join(r.podDir(ctr.PodUID), ctr.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if c.ShimPID != 0 {
		c.RestartCount++
		c.Last, c.Exit = c.Exit, nil
		c.NextStart = time.Time{}
	}
	hosts, resolv := filepath.Join(r.podDir(ctr.PodUID), "hosts"), filepath.Join(r.podDir(ctr.PodUID), "resolv.conf")
	hostname := filepath.Join(r.podDir(ctr.PodUID), "hostname")
	if err := errors.Join(os.WriteFile(hosts, []byte(ctr.Hosts), 0o644), os.WriteFile(resolv, []byte(ctr.ResolvConf), 0o644),
		os.WriteFile(hostname, []byte(ctr.Hostname+"\n"), 0o644)); err != nil {
		return err
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	mounts := slices.Clone(ctr.Mounts)
	// A privileged container's /dev is the node's: no file is made there for it.
	if ctr.TerminationMessagePath != "" && !(ctr.Privileged && strings.HasPrefix(filepath.Clean(ctr.TerminationMessagePath), "/dev/")) {
		// As the kubelet: a fresh file on the node per run, bound at the path, so what
		// the program writes there outlives the container.
		msg := terminationFile(dir, c.RestartCount)
		if err := errors.Join(os.WriteFile(msg, nil, 0o666), os.Chmod(msg, 0o666)); err != nil { // past the umask
			return err
		}
		mounts = append(mounts, shim.Mount{Source: msg, Target: ctr.TerminationMessagePath})
	}
	// Parents before what is mounted inside them, as the kubelet sorts them.
	slices.SortStableFunc(mounts, func(a, b shim.Mount) int {
		return strings.Count(filepath.Clean(a.Target), "/") - strings.Count(filepath.Clean(b.Target), "/")
	})
	// A container with limits gets a cgroup, fresh for each run (the last run's OOM count
	// is not this one's). Moving a process into a v1 cgroup costs ~15 ms (the kernel waits
	// for an RCU grace period), so containers without limits go without; on v2 the shim is
	// started inside it (clone into cgroup), which costs nothing.
	var cgroups []string
	var cgroupFD *os.File
	var err error
	if limited(ctr.Resources) {
		for _, d := range r.cgroups.dirs(ctr.PodUID, ctr.Name) {
			os.Remove(d)
		}
		if cgroups, err = r.cgroups.setup(ctr.PodUID, ctr.Name, ctr.Resources); err != nil {
			return err
		}
		if r.cgroups.v2 && len(cgroups) == 1 {
			if cgroupFD, err = os.Open(cgroups[0]); err != nil {
				return err
			}
			defer cgroupFD.Close()
			cgroups = nil
		}
	}
	// The shim says when the program runs: Start returns then, as a runtime's start does.
	startedR, startedW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer startedR.Close()
	defer startedW.Close()
	builtin := ctr.Argv[0] == r.self
	if builtin && ctr.RootFS == "" {
		// The image's own /agnhost, for commands run in the container (kubectl exec,
		// exec probes): this binary, which answers to that name.
		mounts = append(mounts, shim.Mount{Source: r.shim[0], Target: "/agnhost", ReadOnly: true})
	}
	spec := shim.Spec{Argv: ctr.Argv, Builtin: builtin, Env: ctr.Env, Dir: ctr.Dir, Hostname: ctr.Hostname, Started: 3,
		Root: root, Mounts: mounts, Cgroups: cgroups, User: ctr.User,
		Binds:        map[string]string{"/etc/resolv.conf": resolv, "/etc/hosts": hosts, "/etc/hostname": hostname},
		ReadOnlyRoot: ctr.ReadOnlyRoot, NoNewPrivs: ctr.NoNewPrivs, Caps: ctr.Caps, Privileged: ctr.Privileged,
		Tmpfs: []string{"/tmp", "/run", r.dataDir}, Image: ctr.RootFS, ExitFile: filepath.Join(dir, "exit.json"),
		Attach: r.attachSocket(ctr.PodUID, ctr.Name), Stdin: ctr.Stdin, StdinOnce: ctr.StdinOnce, TTY: ctr.TTY}
	os.Remove(spec.Attach) // the last run's
	specPath := filepath.Join(dir, "spec.json")
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		return err
	}
	os.Remove(spec.ExitFile)
	log, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.log", c.RestartCount)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(r.shim[0], append(r.shim[1:], specPath)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{startedW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS}
	if cgroupFD != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgroupFD.Fd())
	}
	// The shim is its PID namespace's init (its program's reaper), or joins another's.
	var pidns *os.File
	switch other, ok := strings.CutPrefix(ctr.PID, "container:"); {
	case ctr.PID == "host":
	case ok:
		o := r.State(ctr.PodUID).Containers[other]
		if o == nil || !o.Alive() {
			return fmt.Errorf("start %s: container %s, whose PID namespace it shares, is not running", ctr.Name, other)
		}
		if pidns, err = os.Open(fmt.Sprintf("/proc/%d/ns/pid", o.ShimPID)); err != nil {
			return fmt.Errorf("start %s: %w", ctr.Name, err)
		}
		defer pidns.Close()
	default:
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	}
	// Forked from a thread inside the pod's netns (and the shared PID namespace), so
	// the shim starts there.
	if err := startIn(ctr.Netns, ctr.IPC, pidns, cmd.Start); err != nil {
		return fmt.Errorf("start %s: %w", ctr.Name, err)
	}
	pid := cmd.Process.Pid
	c.ShimPID, c.ShimStart, c.StartedAt = pid, procStart(pid), time.Now().Truncate(time.Second)
	r.mu.Lock()
	r.children[pid] = ctr.PodKey
	r.mu.Unlock()
	cmd.Process.Release() // reaped by Run, by PID
	startedW.Close()
	startedR.SetReadDeadline(time.Now().Add(30 * time.Second))
	startedR.Read(make([]byte, 1)) // a byte, or EOF when the shim ended first
	r.log.Info("container started", "pod", ctr.PodKey, "container", ctr.Name, "argv", strings.Join(ctr.Argv, " "), "restarts", c.RestartCount)
	return nil
}

// startIn runs start on a thread of its own in network namespace netns (none: the
// node's), in the IPC namespace bound at ipc (none: the node's) and, when pidns is set,
// with pidns for its children; the thread is not given back.
func startIn(netns, ipc string, pidns *os.File, start func() error) error {
	var ns, ipcns *os.File
	if netns != "" {
		f, err := os.Open(sandbox.NetnsPath(netns))
		if err != nil {
			return err
		}
		defer f.Close()
		ns = f
	}
	if ipc != "" {
		f, err := os.Open(ipc)
		if err != nil {
			return err
		}
		defer f.Close()
		ipcns = f
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if ns != nil {
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				errc <- fmt.Errorf("enter the pod's network namespace: %w", err)
				return
			}
		}
		if ipcns != nil {
			if err := unix.Setns(int(ipcns.Fd()), unix.CLONE_NEWIPC); err != nil {
				errc <- fmt.Errorf("enter the pod's IPC namespace: %w", err)
				return
			}
		}
		if pidns != nil {
			if err := unix.Setns(int(pidns.Fd()), unix.CLONE_NEWPID); err != nil {
				errc <- fmt.Errorf("enter the pod's PID namespace: %w", err)
				return
			}
		}
		errc <- start()
	}()
	return <-errc
}

// VolumeDir is where volume name of pod uid lives on the node (emptyDir, ConfigMap,
// Secret, downward API and projected volumes), its parents made private to root; it
// goes with the pod.
func (r *Runtime) VolumeDir(uid, name string) (string, error) {
	parent := filepath.Join(r.podDir(uid), "volumes")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(parent, name), nil
}

func (r *Runtime) ipcPath(uid string) string { return filepath.Join(r.podDir(uid), "ipc") }

// PodIPC is where pod uid's IPC namespace is bound ("": it has none, the node's: a
// hostIPC pod's, or a pod's started by a daemon before pods had their own).
func (r *Runtime) PodIPC(uid string) string {
	if p := r.ipcPath(uid); isNsfs(p) {
		return p
	}
	return ""
}

// PodNamespaces makes pod uid's IPC namespace, bound at PodIPC (as a sandbox holds the
// pod's IPC namespace for its containers), and sets the pod's sysctls in the pod's own
// namespaces: IPC ones in that IPC namespace, net.* ones in netns. A sysctl of a
// namespace the pod shares with the node (or of none) is refused: the node's are never
// touched. Once made, the namespace stays as it is (the kubelet sets sysctls once, with
// the sandbox); a new sandbox (new netns) calls it after Stop removed the old one.
func (r *Runtime) PodNamespaces(uid, netns string, hostIPC bool, sysctls []corev1.Sysctl) error {
	ipc := r.ipcPath(uid)
	switch {
	case hostIPC:
		ipc = ""
	case isNsfs(ipc):
		return nil
	}
	for _, s := range sysctls {
		switch ns := sysctl.NamespaceOf(s.Name); {
		case ns == sysctl.IPC && ipc != "", ns == sysctl.Net && netns != "":
		default:
			return fmt.Errorf("sysctl %s: not of a namespace of the pod's own", s.Name)
		}
	}
	if ipc == "" && len(sysctls) == 0 {
		return nil
	}
	if err := os.MkdirAll(r.podDir(uid), 0o700); err != nil {
		return err
	}
	var netnsFile *os.File
	if netns != "" {
		f, err := os.Open(sandbox.NetnsPath(netns))
		if err != nil {
			return err
		}
		defer f.Close()
		netnsFile = f
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends in the pod's namespaces
		errc <- func() error {
			if netnsFile != nil {
				if err := unix.Setns(int(netnsFile.Fd()), unix.CLONE_NEWNET); err != nil {
					return fmt.Errorf("enter the pod's network namespace: %w", err)
				}
			}
			if ipc != "" {
				if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
					return fmt.Errorf("new IPC namespace: %w", err)
				}
			}
			// /proc/sys/kernel/{shm,msg,sem}* and /proc/sys/net/* are those of the writing
			// thread's IPC and network namespaces.
			for _, s := range sysctls {
				if err := os.WriteFile(sysctl.Path(s.Name), []byte(s.Value), 0); err != nil {
					return fmt.Errorf("sysctl %s: %w", s.Name, err)
				}
			}
			if ipc == "" {
				return nil
			}
			if err := os.WriteFile(ipc, nil, 0o600); err != nil {
				return err
			}
			if err := unix.Mount("/proc/thread-self/ns/ipc", ipc, "", unix.MS_BIND, ""); err != nil {
				os.Remove(ipc)
				return fmt.Errorf("bind the pod's IPC namespace: %w", err)
			}
			return nil
		}()
	}()
	return <-errc
}

// isNsfs reports whether path is a bound namespace.
func isNsfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// removePodDir removes a pod's directory, unmounting its IPC namespace and
// memory-backed volumes first.
func removePodDir(dir string) {
	unix.Unmount(filepath.Join(dir, "ipc"), unix.MNT_DETACH)
	vols, _ := filepath.Glob(filepath.Join(dir, "volumes", "*"))
	for _, v := range vols {
		unix.Unmount(v, unix.MNT_DETACH) // EINVAL when it is no mount point
	}
	os.RemoveAll(dir)
}

// spec reads the spec a container's current run was started with.
func (r *Runtime) spec(uid, name string) (*shim.Spec, error) {
	data, err := os.ReadFile(filepath.Join(r.podDir(uid), name, "spec.json"))
	if err != nil {
		return nil, err
	}
	var s shim.Spec
	return &s, json.Unmarshal(data, &s)
}

// Stop signals every container of pod uid: SIGTERM, then SIGKILL after grace; it
// returns when all are gone, and forgets the pod. When ctx ends first it returns its
// error and leaves the pod's record (the containers have had their SIGTERM).
func (r *Runtime) Stop(ctx context.Context, uid string, grace time.Duration) error {
	st := r.State(uid)
	var pids []int
	for _, c := range st.Containers {
		if c.Alive() {
			pids = append(pids, c.ShimPID)
			syscall.Kill(-c.ShimPID, syscall.SIGTERM) // the shim's session: shim and program
		}
	}
	// A deadline passing is not an error (SIGKILL follows); only ctx's end is.
	gone := func(pid int) wait.ConditionWithContextFunc {
		return func(context.Context) (bool, error) { return procStart(pid) == 0, nil }
	}
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Until(deadline), true, gone(pid))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Second, true, gone(pid))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	removePodDir(r.podDir(uid))
	r.cgroups.remove(uid)
	return nil
}

// StopRun signals one run of a container (c as Start recorded it): SIGTERM, then
// SIGKILL after grace; it returns once the run is over, or ctx's error. The pod's
// record stays: the run's end is collected as a crash's is.
func (r *Runtime) StopRun(ctx context.Context, c ContainerState, grace time.Duration) error {
	if !c.Alive() {
		return nil
	}
	gone := func(context.Context) (bool, error) { return !c.Alive(), nil }
	syscall.Kill(-c.ShimPID, syscall.SIGTERM) // the shim's session: shim and program
	wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, grace, true, gone)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.Alive() { // not a reused PID
		syscall.Kill(-c.ShimPID, syscall.SIGKILL)
	}
	wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Second, true, gone)
	return ctx.Err()
}

// shims finds the running shims of containers under dataDir, by their command line
// (the spec's path): PID → pod UID.
func shims(dataDir string) map[int]string {
	out := map[int]string{}
	prefix := filepath.Join(dataDir, "pods") + "/"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		last := args[len(args)-1]
		if !strings.HasPrefix(last, prefix) || !strings.HasSuffix(last, "/spec.json") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		uid, _, _ := strings.Cut(strings.TrimPrefix(last, prefix), "/")
		out[pid] = uid
	}
	return out
}

// KillStrays kills the shims of this data dir that no container record names: started
// by a daemon killed before it could record them.
func (r *Runtime) KillStrays() {
	for pid, uid := range shims(r.dataDir) {
		known := false
		for _, c := range r.State(uid).Containers {
			known = known || c.ShimPID == pid
		}
		if !known {
			unix.Kill(-pid, unix.SIGKILL)
			unix.Kill(pid, unix.SIGKILL)
			r.log.Warn("killed a container shim no record names", "pid", pid, "pod", uid)
		}
	}
}

// Pods lists the UIDs of the pods with container records.
func (r *Runtime) Pods() []string {
	dirs, _ := filepath.Glob(filepath.Join(r.dataDir, "pods", "*"))
	for i, d := range dirs {
		dirs[i] = filepath.Base(d)
	}
	return dirs
}

// Cleanup kills the process group of every container shim of dataDir (recorded, or
// found by its command line) and forgets the pods.
func Cleanup(dataDir string, log *slog.Logger) {
	for pid, uid := range shims(dataDir) {
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
		log.Info("killed container shim", "pod", uid, "pid", pid)
	}
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*"))
	for _, dir := range dirs {
		for name, c := range loadState(dataDir, filepath.Base(dir)).Containers {
			if c.Alive() {
				unix.Kill(-c.ShimPID, unix.SIGKILL)
				log.Info("killed container", "pod", filepath.Base(dir), "container", name)
			}
		}
		removePodDir(dir)
		cg := detectCgroups()
		wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 2*time.Second, true, func(context.Context) (bool, error) {
			cg.remove(filepath.Base(dir))
			_, err := os.Stat(filepath.Join(cg.memory, podCgroup(filepath.Base(dir))))
			return cg.memory == "" || err != nil, nil
		})
	}
}
