package node

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/node/images"
	"github.com/minicluster/minicluster/node/runtime"
	"github.com/minicluster/minicluster/node/runtime/shim"
	"github.com/minicluster/minicluster/node/sandbox"
)

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

// syncContainers runs the init containers one after another to success, then starts,
// restarts or leaves each app container as the restart policy says. It returns when the
// pod next needs a look (0: only on events).
func (a *Agent) syncContainers(pod *corev1.Pod, sb sandbox.Sandbox, vols map[string]string) (*runtime.PodState, time.Duration, error) {
	uid := string(pod.UID)
	st := a.rt.State(uid)
	var requeue time.Duration
	if pidMode(pod, "") == "container:"+runtime.PodInit {
		if err := a.ensurePodInit(pod, sb, st); err != nil {
			return st, 0, err
		}
	}
	for i := range pod.Spec.InitContainers {
		ctr := &pod.Spec.InitContainers[i]
		c := a.containerFor(st, pod, ctr.Name)
		if c.Exit != nil && c.Exit.ExitCode == 0 {
			continue // done
		}
		wait, err := a.syncOne(pod, sb, vols, st, ctr, initRestartPolicy(pod.Spec.RestartPolicy))
		if err != nil {
			return st, 0, err
		}
		return st, wait, a.rt.SaveState(uid, st) // the next init container waits for this one
	}
	for i := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[i]
		wait, err := a.syncOne(pod, sb, vols, st, ctr, pod.Spec.RestartPolicy)
		if err != nil {
			return st, 0, err
		}
		if wait > 0 {
			requeue = pollInterval(requeue, wait)
		}
	}
	// Ephemeral containers (kubectl debug) run once each, beside the others.
	for i := range pod.Spec.EphemeralContainers {
		ctr := corev1.Container(pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		wait, err := a.syncOne(pod, sb, vols, st, &ctr, corev1.RestartPolicyNever)
		if err != nil {
			return st, 0, err
		}
		if wait > 0 {
			requeue = pollInterval(requeue, wait)
		}
	}
	return st, requeue, a.rt.SaveState(uid, st)
}

// initRestartPolicy: init containers that fail are retried unless the pod never restarts.
func initRestartPolicy(p corev1.RestartPolicy) corev1.RestartPolicy {
	if p == corev1.RestartPolicyNever {
		return p
	}
	return corev1.RestartPolicyOnFailure
}

// containerFor returns a container's record, noting the end of a run whose shim is gone.
func (a *Agent) containerFor(st *runtime.PodState, pod *corev1.Pod, name string) *runtime.ContainerState {
	c := st.Containers[name]
	if c == nil {
		c = &runtime.ContainerState{}
		st.Containers[name] = c
	}
	a.rt.CollectExit(string(pod.UID), name, c)
	if c.Exit != nil {
		a.probes.end(pod.UID, name, c.RestartCount)
	}
	return c
}

// syncOne starts or restarts one container of the pod's state st, or leaves it; it
// returns when to look again.
func (a *Agent) syncOne(pod *corev1.Pod, sb sandbox.Sandbox, vols map[string]string, st *runtime.PodState, ctr *corev1.Container, policy corev1.RestartPolicy) (time.Duration, error) {
	c := a.containerFor(st, pod, ctr.Name)
	if c.Alive() {
		a.probes.ensure(pod, ctr, c, sb.IP.String())
		if !a.rt.Owns(c.ShimPID) {
			return time.Second, nil // adopted: its end is not reported
		}
		return 0, nil
	}
	if c.ShimPID != 0 && c.Exit == nil { // it ended since containerFor looked
		a.rt.CollectExit(string(pod.UID), ctr.Name, c)
		a.probes.end(pod.UID, ctr.Name, c.RestartCount)
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
			a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)",
				ctr.Name, pod.Name, pod.Namespace, pod.UID)
			return wait, nil
		}
	}
	err := a.startContainer(pod, sb, vols, ctr, c)
	if err == nil {
		err = a.postStart(pod, sb.IP.String(), st, ctr, c)
	}
	switch {
	case errors.Is(err, runtime.ErrImageUnavailable):
		c.Waiting, c.Message = "ErrImageNeverPull", err.Error()
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", err)
	case errors.Is(err, errImagePull), errors.Is(err, errImagePullBack), errors.Is(err, errImageNeverPull), errors.Is(err, errPostStartHook):
		// "<reason>: <message>", the reason being the error's own text.
		reason, msg, _ := strings.Cut(err.Error(), ": ")
		c.Waiting, c.Message = reason, msg
	case errors.Is(err, ErrContainerConfig):
		c.Waiting, c.Message = "CreateContainerConfigError", err.Error()
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "Error: %s", err)
	case err != nil:
		return 0, err
	default:
		a.probes.ensure(pod, ctr, c, sb.IP.String()) // after its postStart hook, as the kubelet's
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

func restartWanted(policy corev1.RestartPolicy, exit *shim.ExitRecord) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exit != nil && exit.ExitCode != 0
	}
	return true
}

// startContainer starts a run of ctr in the pod's sandbox, with its environment, hosts
// file and hostname, reporting it as the kubelet does.
func (a *Agent) startContainer(pod *corev1.Pod, sb sandbox.Sandbox, vols map[string]string, ctr *corev1.Container, c *runtime.ContainerState) error {
	// A stored image (pulled or imported) runs in its own root; an image of the catalog
	// (built in, the host's busybox or nginx, images.yaml) in a view of the host's;
	// any other is pulled.
	var img *images.Image
	if _, stored := a.rt.Images().Get(ctr.Image); stored || !a.rt.Cataloged(ctr.Image) {
		pulled, err := a.ensureImage(a.ctx, pod, ctr)
		if err != nil {
			return err
		}
		img = pulled
	}
	var imageEnv []string
	if img != nil {
		imageEnv = img.Config.Env
	}
	env, err := a.containerEnv(pod, ctr, sb, imageEnv)
	if err != nil {
		return err
	}
	expanded := expandCommand(ctr, env)
	var argv []string
	var rootfs, dir string
	if img != nil {
		rootfs, dir = a.rt.Images().RootFS(img), cmp.Or(ctr.WorkingDir, img.Config.WorkingDir)
		argv, err = imageArgv(img, expanded)
		a.rt.Images().Used(img)
	} else {
		dir = ctr.WorkingDir
		argv, err = a.rt.Resolve(expanded)
		a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", ctr.Image)
	}
	if err != nil {
		return err
	}
	mounts, err := containerMounts(ctr, vols, env)
	if err != nil {
		return err
	}
	user, err := containerUser(pod, ctr)
	if err != nil {
		return err
	}
	if user == nil && img != nil {
		if user, err = imageUser(rootfs, img.Config.User); err != nil {
			return err
		}
	}
	run := a.podContainer(pod, sb)
	run.Name, run.Argv, run.Env, run.Dir, run.User, run.RootFS = ctr.Name, argv, env, dir, user, rootfs
	run.Stdin, run.StdinOnce, run.TTY, run.Mounts, run.Resources = ctr.Stdin, ctr.StdinOnce, ctr.TTY, mounts, ctr.Resources
	run.PID = pidMode(pod, ctr.Name)
	run.TerminationMessagePath = ctr.TerminationMessagePath
	var add, drop []string
	if sc := ctr.SecurityContext; sc != nil {
		run.ReadOnlyRoot = ptr.Deref(sc.ReadOnlyRootFilesystem, false)
		run.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
		run.Privileged = ptr.Deref(sc.Privileged, false)
		if c := sc.Capabilities; c != nil {
			for _, n := range c.Add {
				add = append(add, string(n))
			}
			for _, n := range c.Drop {
				drop = append(drop, string(n))
			}
		}
	}
	if run.Caps, err = shim.Capabilities(add, drop, run.Privileged); err != nil {
		return fmt.Errorf("%w: %v", ErrContainerConfig, err)
	}
	a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Created", "Created container: %s", ctr.Name)
	if err := a.rt.Start(run, c); err != nil {
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "Error: %s", err)
		return err
	}
	a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Started", "Started container %s", ctr.Name)
	return nil
}

// podContainer is what every container of pod has in common.
func (a *Agent) podContainer(pod *corev1.Pod, sb sandbox.Sandbox) runtime.Container {
	return runtime.Container{PodKey: key(pod), PodUID: string(pod.UID), Netns: sb.Netns, IPC: a.rt.PodIPC(string(pod.UID)), Hostname: podHostname(pod),
		Hosts: podHosts(pod, sb.IP, a.cfg.ClusterDomain), ResolvConf: podResolvConf(pod, a.cfg.ClusterDNS, a.cfg.ClusterDomain, a.hostDNS).String()}
}

// pidMode is the PID namespace a container runs in (runtime.Container.PID): the
// node's (hostPID), the pod's (shareProcessNamespace: its init's), its target's (an
// ephemeral container with targetContainerName), else its own.
func pidMode(pod *corev1.Pod, name string) string {
	switch {
	case pod.Spec.HostPID:
		return "host"
	case ptr.Deref(pod.Spec.ShareProcessNamespace, false):
		return "container:" + runtime.PodInit
	}
	for _, e := range pod.Spec.EphemeralContainers {
		if e.Name == name && e.TargetContainerName != "" {
			return "container:" + e.TargetContainerName
		}
	}
	return ""
}

// ensurePodInit starts the pod's init process, which holds the PID namespace its
// containers share, unless it runs.
func (a *Agent) ensurePodInit(pod *corev1.Pod, sb sandbox.Sandbox, st *runtime.PodState) error {
	c := a.containerFor(st, pod, runtime.PodInit)
	if c.Alive() {
		return nil
	}
	if err := a.rt.Start(a.rt.PodInitContainer(a.podContainer(pod, sb)), c); err != nil {
		return err
	}
	return a.rt.SaveState(string(pod.UID), st) // the containers find it there
}

// containerUser is who a container runs as: its securityContext's runAsUser and
// runAsGroup over the pod's, with the pod's supplementalGroups and fsGroup; nil is root,
// which the images here run as.
func containerUser(pod *corev1.Pod, ctr *corev1.Container) (*shim.User, error) {
	var uid, gid *int64
	var nonRoot *bool
	var groups []uint32
	if sc := pod.Spec.SecurityContext; sc != nil {
		uid, gid, nonRoot = sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot
		for _, g := range sc.SupplementalGroups {
			groups = append(groups, uint32(g))
		}
		if sc.FSGroup != nil {
			groups = append(groups, uint32(*sc.FSGroup))
		}
	}
	if sc := ctr.SecurityContext; sc != nil {
		uid, gid, nonRoot = cmp.Or(sc.RunAsUser, uid), cmp.Or(sc.RunAsGroup, gid), cmp.Or(sc.RunAsNonRoot, nonRoot)
	}
	if nonRoot != nil && *nonRoot && (uid == nil || *uid == 0) {
		if uid == nil {
			return nil, fmt.Errorf("%w: container has runAsNonRoot and image will run as root (pod: %q, container: %s)",
				ErrContainerConfig, fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID), ctr.Name)
		}
		return nil, fmt.Errorf("%w: container's runAsUser breaks non-root policy (pod: %q, container: %s)",
			ErrContainerConfig, fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID), ctr.Name)
	}
	if uid == nil && gid == nil && len(groups) == 0 {
		return nil, nil
	}
	u := &shim.User{UID: uint32(ptr.Deref(uid, 0)), GID: uint32(ptr.Deref(gid, 0)), Groups: groups}
	return u, nil
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork { // the node's
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	if len(pod.Name) > 63 {
		return strings.TrimRight(pod.Name[:63], "-.")
	}
	return pod.Name
}
