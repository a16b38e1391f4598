package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// containerState is the agent's record of one container, kept on disk so a restarted
// daemon adopts running containers instead of starting them twice.
type containerState struct {
	ShimPID      int         `json:"shimPID"`
	ShimStart    uint64      `json:"shimStart"` // /proc start time: tells a reused PID apart
	RestartCount int32       `json:"restartCount"`
	StartedAt    time.Time   `json:"startedAt"`
	Exit         *exitRecord `json:"exit,omitempty"` // the current run's end, once it ended
	Last         *exitRecord `json:"last,omitempty"` // the previous run's end
	NextStart    time.Time   `json:"nextStart"`      // not before, after a crash (back-off)
	// Waiting explains why there is no process (image unavailable); not persisted.
	Waiting, Message string `json:"-"`
}

// podState is every container of one pod.
type podState struct {
	Containers  map[string]*containerState `json:"containers"`
	GracePeriod int64                      `json:"gracePeriod"`
}

// crash-loop back-off, as the kubelet's: 10 s doubling to 5 min, reset after 10 min of running.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

func backoff(restarts int32) time.Duration {
	if restarts <= 0 {
		return 0
	}
	d := backoffBase << (restarts - 1)
	if d > backoffMax || d <= 0 {
		return backoffMax
	}
	return d
}

func (a *Agent) podDir(uid string) string { return filepath.Join(a.cfg.DataDir, "pods", uid) }

func (a *Agent) loadState(uid string) *podState {
	st := &podState{Containers: map[string]*containerState{}}
	if data, err := os.ReadFile(filepath.Join(a.podDir(uid), "state.json")); err == nil {
		json.Unmarshal(data, st)
	}
	if st.Containers == nil {
		st.Containers = map[string]*containerState{}
	}
	return st
}

func (a *Agent) saveState(uid string, st *podState) error {
	data, _ := json.Marshal(st)
	if err := os.MkdirAll(a.podDir(uid), 0o700); err != nil {
		return err
	}
	path := filepath.Join(a.podDir(uid), "state.json")
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

func (c *containerState) alive() bool {
	return c.ShimPID > 0 && c.Exit == nil && procStart(c.ShimPID) == c.ShimStart && c.ShimStart != 0
}

// collectExit notes the end of a run whose shim is gone.
func (a *Agent) collectExit(uid, name string, c *containerState) {
	if c.ShimPID == 0 || c.Exit != nil || c.alive() {
		return
	}
	var rec exitRecord
	data, err := os.ReadFile(filepath.Join(a.podDir(uid), name, "exit.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil {
		rec = exitRecord{ExitCode: 137, Signal: "SIGKILL", Error: "the container's shim vanished", StartedAt: c.StartedAt, FinishedAt: time.Now()}
	}
	c.Exit = &rec
}

// syncContainers runs the init containers one after another to success, then starts,
// restarts or leaves each app container as the restart policy says. It returns when the
// pod next needs a look (0: only on events).
func (a *Agent) syncContainers(pod *corev1.Pod, sb sandbox) (*podState, time.Duration, error) {
	uid := string(pod.UID)
	st := a.loadState(uid)
	var requeue time.Duration
	for i := range pod.Spec.InitContainers {
		ctr := &pod.Spec.InitContainers[i]
		c := a.containerFor(st, pod, ctr.Name)
		if c.Exit != nil && c.Exit.ExitCode == 0 {
			continue // done
		}
		wait, err := a.syncOne(pod, sb, ctr, c, initRestartPolicy(pod.Spec.RestartPolicy))
		if err != nil {
			return st, 0, err
		}
		return st, wait, a.saveState(uid, st) // the next init container waits for this one
	}
	for i := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[i]
		wait, err := a.syncOne(pod, sb, ctr, a.containerFor(st, pod, ctr.Name), pod.Spec.RestartPolicy)
		if err != nil {
			return st, 0, err
		}
		if wait > 0 {
			requeue = pollInterval(requeue, wait)
		}
	}
	return st, requeue, a.saveState(uid, st)
}

// initRestartPolicy: init containers that fail are retried unless the pod never restarts.
func initRestartPolicy(p corev1.RestartPolicy) corev1.RestartPolicy {
	if p == corev1.RestartPolicyNever {
		return p
	}
	return corev1.RestartPolicyOnFailure
}

// containerFor returns a container's record, noting the end of a run whose shim is gone.
func (a *Agent) containerFor(st *podState, pod *corev1.Pod, name string) *containerState {
	c := st.Containers[name]
	if c == nil {
		c = &containerState{}
		st.Containers[name] = c
	}
	a.collectExit(string(pod.UID), name, c)
	if c.Exit != nil {
		a.endProbers(pod.UID, name, c.RestartCount)
	}
	return c
}

// syncOne starts or restarts one container, or leaves it; it returns when to look again.
func (a *Agent) syncOne(pod *corev1.Pod, sb sandbox, ctr *corev1.Container, c *containerState, policy corev1.RestartPolicy) (time.Duration, error) {
	if c.alive() {
		a.ensureProbers(pod, ctr, c, sb.ip.String())
		if _, ours := a.children.Load(c.ShimPID); !ours {
			return time.Second, nil // adopted: no Wait to tell us it ended
		}
		return 0, nil
	}
	if c.ShimPID != 0 && !restartWanted(policy, c.Exit) {
		return 0, nil
	}
	if c.ShimPID != 0 { // a crash: back off, then restart
		if c.Exit.FinishedAt.Sub(c.Exit.StartedAt) >= backoffReset {
			c.RestartCount = 0
		}
		if c.NextStart.IsZero() {
			c.NextStart = time.Now().Add(backoff(c.RestartCount))
		}
		if wait := time.Until(c.NextStart); wait > 0 {
			a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)",
				ctr.Name, pod.Name, pod.Namespace, pod.UID)
			return wait, nil
		}
	}
	err := a.startContainer(pod, sb, ctr, c)
	switch {
	case errors.Is(err, ErrImageUnavailable):
		c.Waiting, c.Message = "ErrImageNeverPull", err.Error()
		a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", err)
	case errors.Is(err, ErrContainerConfig):
		c.Waiting, c.Message = "CreateContainerConfigError", err.Error()
		a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "Error: %s", err)
	case err != nil:
		return 0, err
	default:
		return 0, nil
	}
	return 10 * time.Second, nil
}

func pollInterval(cur, d time.Duration) time.Duration {
	if cur == 0 || d < cur {
		return d
	}
	return cur
}

func restartWanted(policy corev1.RestartPolicy, exit *exitRecord) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exit != nil && exit.ExitCode != 0
	}
	return true
}

func (a *Agent) startContainer(pod *corev1.Pod, sb sandbox, ctr *corev1.Container, c *containerState) error {
	argv, err := a.catalog.resolve(ctr)
	if err != nil {
		return err
	}
	a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", ctr.Image)
	dir := filepath.Join(a.podDir(string(pod.UID)), ctr.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if c.ShimPID != 0 {
		c.RestartCount++
		c.Last, c.Exit = c.Exit, nil
		c.NextStart = time.Time{}
	}
	hosts := filepath.Join(a.podDir(string(pod.UID)), "hosts")
	if err := os.WriteFile(hosts, []byte(podHosts(pod, sb.ip, a.cfg.ClusterDomain)), 0o644); err != nil {
		return err
	}
	env, err := a.containerEnv(pod, ctr, sb)
	if err != nil {
		return err
	}
	spec := ShimSpec{Argv: argv, Env: env, Dir: ctr.WorkingDir, Hostname: podHostname(pod),
		Binds: map[string]string{"/etc/resolv.conf": filepath.Join("/etc/netns", sb.netns, "resolv.conf"), "/etc/hosts": hosts},
		Tmpfs: []string{"/tmp", "/run", a.cfg.DataDir}, ExitFile: filepath.Join(dir, "exit.json"),
		Attach: a.attachSocket(string(pod.UID), ctr.Name), Stdin: ctr.Stdin, StdinOnce: ctr.StdinOnce, TTY: ctr.TTY}
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
	cmd := exec.Command(a.self, "shim", specPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS}
	a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Created", "Created container: %s", ctr.Name)
	if err := startInNetns(cmd, sb.netns); err != nil {
		a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "Error: %s", err)
		return fmt.Errorf("start %s: %w", ctr.Name, err)
	}
	c.ShimPID, c.ShimStart, c.StartedAt = cmd.Process.Pid, procStart(cmd.Process.Pid), time.Now().Truncate(time.Second)
	k, pid := key(pod), cmd.Process.Pid
	a.children.Store(pid, true)
	go func() {
		cmd.Wait() // reap the shim; the pod's next sync reads its exit record
		a.children.Delete(pid)
		a.loop.Enqueue(k)
	}()
	a.ensureProbers(pod, ctr, c, sb.ip.String())
	a.kubelet.ContainerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Started", "Started container %s", ctr.Name)
	a.cfg.Log.Info("container started", "pod", k, "container", ctr.Name, "argv", strings.Join(argv, " "), "restarts", c.RestartCount)
	return nil
}

// startInNetns forks cmd from a thread inside the pod's netns, so the child starts there.
func startInNetns(cmd *exec.Cmd, name string) error {
	var startErr error
	err := inNetns(name, func() { startErr = cmd.Start() })
	return errors.Join(err, startErr)
}

// inNetns runs f on a thread of its own moved into the named netns (sockets and
// children made there belong to it). A thread that cannot move back ends with its
// goroutine instead of returning to the pool.
func inNetns(name string, f func()) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		f()
		if err := netns.Set(orig); err != nil {
			errc <- err // the thread stays locked and ends with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// stopContainers signals every container of a pod: SIGTERM, then SIGKILL after grace;
// it returns when all are gone.
func (a *Agent) stopContainers(uid string, grace time.Duration) {
	st := a.loadState(uid)
	var pids []int
	for _, c := range st.Containers {
		if c.alive() {
			pids = append(pids, c.ShimPID)
			syscall.Kill(-c.ShimPID, syscall.SIGTERM) // the shim's session: shim and program
		}
	}
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		for procStart(pid) != 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		for i := 0; i < 100 && procStart(pid) != 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.RemoveAll(a.podDir(uid))
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	if len(pod.Name) > 63 {
		return strings.TrimRight(pod.Name[:63], "-.")
	}
	return pod.Name
}
