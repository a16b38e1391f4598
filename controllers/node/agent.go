package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/controllers"
	"github.com/minicluster/minicluster/store"
)

// Config configures the node agent.
type Config struct {
	API           *apiserver.API
	Instance      string
	NodeName      string
	PodCIDR       netip.Prefix
	ClusterDNS    netip.Addr
	ClusterDomain string
	// DataDir holds per-pod state and logs (and is hidden from pods).
	DataDir string
	// Metrics, if set, gets minicluster_pod_ips_allocated.
	Metrics prometheus.Registerer
	// Events, if set, receives what happens to pods and their containers, as the
	// kubelet (and the scheduler, for binding) report it.
	Events *controllers.Events
	Log    *slog.Logger
}

// Agent runs this node's pods.
type Agent struct {
	cfg      Config
	net      *network
	ipam     *ipam
	podRes   *apiserver.Resource
	nodeRes  *apiserver.Resource
	leaseRes *apiserver.Resource
	loop     *controllers.Loop
	hostDNS  resolvConf
	catalog  *catalog
	self     string // this binary: built-in images and the shim
	// kubelet and scheduler record events under those components' names.
	kubelet, scheduler *controllers.Recorder

	mu          sync.Mutex
	sandboxes   map[string]sandbox // by namespace/name
	children    sync.Map           // shim PIDs this daemon started and reaps
	terminating sync.Map           // UIDs of pods being stopped
	probes      sync.Map           // probeKey → *probeState
	hostIP      atomic.Value       // netip.Addr: the node's InternalIP
}

// heartbeat is how often the Node's Ready condition is refreshed.
const heartbeat = 30 * time.Second

// New builds the agent; nothing touches the kernel before Run.
func New(cfg Config) (*Agent, error) {
	if cfg.API == nil || cfg.Instance == "" || !cfg.PodCIDR.IsValid() || cfg.NodeName == "" || cfg.DataDir == "" {
		return nil, errors.New("node agent: API, instance, node name, data dir and pod CIDR are required")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cat, err := newCatalog(self, filepath.Join(cfg.DataDir, "images.yaml"))
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := newIPAM(cfg.PodCIDR)
	reg := cfg.API.Registry()
	a := &Agent{cfg: cfg, ipam: p, podRes: reg.Lookup("", "pods"), nodeRes: reg.Lookup("", "nodes"), leaseRes: reg.Lookup("coordination.k8s.io", "leases"),
		net:       &network{instance: cfg.Instance, cidr: cfg.PodCIDR.Masked(), gateway: p.gateway(), log: cfg.Log},
		sandboxes: map[string]sandbox{}, catalog: cat, self: self,
		kubelet: cfg.Events.For("kubelet", cfg.NodeName), scheduler: cfg.Events.For("default-scheduler", "")}
	a.loop = controllers.NewLoop("node", cfg.Log, a.reconcile)
	if cfg.Metrics != nil {
		err := cfg.Metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "minicluster_pod_ips_allocated",
			Help: "Pod addresses the node agent holds (one per pod sandbox)."}, func() float64 { return float64(p.allocated()) }))
		if err != nil {
			return nil, err
		}
	}
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		a.hostDNS = parseResolvConf(string(data))
	}
	return a, nil
}

// Run sets up node networking, registers the Node, adopts surviving sandboxes and then
// reconciles pods until ctx is cancelled. Sandboxes stay when it stops.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.net.setup(); err != nil {
		return fmt.Errorf("node network: %w", err)
	}
	if err := a.registerNode(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	if err := a.adopt(); err != nil {
		return fmt.Errorf("adopt sandboxes: %w", err)
	}
	go controllers.WatchResource(ctx, a.cfg.API, a.podRes, a.cfg.Log, func(o store.Object) { a.loop.Enqueue(key(o)) })
	go a.heartbeats(ctx)
	go a.resync(ctx)
	a.loop.Run(ctx, 4)
	return nil
}

// resyncPeriod is how often every pod on the node is looked at again, so what changed
// behind the daemon's back (a veth or netns deleted, say) is found without an event.
var resyncPeriod = 10 * time.Second

func (a *Agent) resync(ctx context.Context) {
	t := time.NewTicker(resyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.mu.Lock()
			for k := range a.sandboxes {
				a.loop.Enqueue(k)
			}
			a.mu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}

func key(o store.Object) string { return o.GetNamespace() + "/" + o.GetName() }

// adopt takes over sandboxes left by an earlier run whose pod still exists, and removes
// the others.
func (a *Agent) adopt() error {
	found, err := a.net.list()
	if err != nil {
		return err
	}
	for _, sb := range found {
		parts := strings.SplitN(strings.TrimPrefix(sb.netns, a.cfg.Instance+"_"), "_", 2)
		var pod store.Object
		if len(parts) == 2 {
			pod, _ = a.cfg.API.Get(a.podRes, parts[0], parts[1])
		}
		if pod == nil || string(pod.GetUID()) != sb.uid || !sb.ip.IsValid() {
			a.net.remove(sb.netns, sb.uid)
			a.cfg.Log.Info("removed orphaned pod network", "netns", sb.netns)
			continue
		}
		a.ipam.reserve(sb.ip, sb.uid)
		a.sandboxes[parts[0]+"/"+parts[1]] = sb
		a.cfg.Log.Info("adopted pod network", "netns", sb.netns, "ip", sb.ip)
	}
	// Containers of pods that went away while the daemon was down.
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "pods", "*"))
	for _, dir := range dirs {
		uid := filepath.Base(dir)
		if !a.hasSandbox(uid) {
			a.stopContainers(uid, forcedGrace)
			a.cfg.Log.Info("stopped containers of a vanished pod", "uid", uid)
		}
	}
	return nil
}

func (a *Agent) hasSandbox(uid string) bool {
	for _, sb := range a.sandboxes {
		if sb.uid == uid {
			return true
		}
	}
	return false
}

func (a *Agent) reconcile(ctx context.Context, k string) error {
	ns, name, _ := strings.Cut(k, "/")
	obj, err := a.cfg.API.Get(a.podRes, ns, name)
	if apierrors.IsNotFound(err) {
		a.teardown(k)
		return nil
	}
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		a.terminate(pod)
		return nil
	}
	if pod.Spec.NodeName == "" {
		return a.bind(ctx, pod)
	}
	if pod.Spec.NodeName != a.cfg.NodeName {
		return nil
	}
	sb, err := a.ensureSandbox(pod)
	if err != nil {
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil // finished pods stay as they ended
	}
	st, requeue, err := a.syncContainers(pod, sb)
	if err != nil {
		return err
	}
	if requeue > 0 {
		a.loop.EnqueueAfter(k, requeue)
	}
	return a.updateStatus(ctx, pod, sb, st)
}

// bind assigns an unscheduled pod to this node (the scheduler's job on one node).
func (a *Agent) bind(ctx context.Context, pod *corev1.Pod) error {
	_, err := a.cfg.API.Update(ctx, a.podRes, pod.Namespace, pod.Name, "", func(cur store.Object) (store.Object, error) {
		p := cur.(*corev1.Pod)
		if p.UID != pod.UID {
			return nil, apierrors.NewConflict(a.podRes.GroupResource(), p.Name, errors.New("pod replaced"))
		}
		if p.Spec.NodeName == "" {
			p.Spec.NodeName = a.cfg.NodeName
		}
		return p, nil
	}, false)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		a.scheduler.Event(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, a.cfg.NodeName)
	}
	return err
}

func (a *Agent) ensureSandbox(pod *corev1.Pod) (sandbox, error) {
	k := key(pod)
	a.mu.Lock()
	sb, ok := a.sandboxes[k]
	a.mu.Unlock()
	if ok && sb.uid == string(pod.UID) {
		what, err := a.net.repair(sb)
		switch {
		case what == "":
			return sb, nil
		case what != "netns":
			a.cfg.Log.Warn("repaired the pod's network", "pod", k, "repaired", what, "err", err)
			return sb, err
		}
		// Its netns was removed: as the kubelet does with a dead sandbox, a new one,
		// and the containers start again in it.
		a.cfg.Log.Warn("the pod's network namespace was removed; recreating the pod's sandbox", "pod", k, "netns", sb.netns)
	}
	if ok {
		a.teardown(k) // a pod of the same name was replaced, or its sandbox was lost
	}
	ip, err := a.ipam.allocate(string(pod.UID))
	if err != nil {
		return sandbox{}, err
	}
	sb = sandbox{netns: a.net.netnsName(pod.Namespace, pod.Name), uid: string(pod.UID), ip: ip}
	if err := a.net.create(sb); err != nil {
		a.ipam.release(ip)
		return sandbox{}, fmt.Errorf("pod %s network: %w", k, err)
	}
	rc := podResolvConf(pod, a.cfg.ClusterDNS, a.cfg.ClusterDomain, a.hostDNS)
	if err := writeNetnsFile(sb.netns, "resolv.conf", rc.String()); err != nil {
		a.cfg.Log.Warn("write resolv.conf", "pod", k, "err", err)
	}
	a.mu.Lock()
	a.sandboxes[k] = sb
	a.mu.Unlock()
	a.cfg.Log.Info("pod network ready", "pod", k, "ip", ip, "netns", sb.netns)
	return sb, nil
}

// forcedGrace is how long containers of a pod deleted without waiting for its node
// (grace 0, or gone while the daemon was down) get after SIGTERM.
const forcedGrace = 2 * time.Second

// terminate stops a pod marked for deletion within its grace period, then deletes it for
// good; it runs once per pod, beside the workers.
func (a *Agent) terminate(pod *corev1.Pod) {
	if _, busy := a.terminating.LoadOrStore(pod.UID, true); busy {
		return
	}
	grace := forcedGrace
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	go func() {
		defer a.terminating.Delete(pod.UID)
		deadline := time.Now().Add(grace)
		for name, c := range a.loadState(string(pod.UID)).Containers {
			if c.alive() {
				a.kubelet.ContainerEvent(pod, name, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
			}
		}
		a.runPreStop(pod, deadline)
		a.teardownWithin(key(pod), max(time.Until(deadline), 0))
		zero, uid := int64(0), pod.UID
		_, _, err := a.cfg.API.Delete(context.Background(), a.podRes, pod.Namespace, pod.Name,
			metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			a.cfg.Log.Error("delete terminated pod", "pod", key(pod), "err", err)
			a.loop.EnqueueAfter(key(pod), time.Second)
		}
	}()
}

func (a *Agent) teardown(k string) { a.teardownWithin(k, forcedGrace) }

// teardownWithin stops the pod's containers (SIGTERM, SIGKILL after grace) and removes
// its network.
func (a *Agent) teardownWithin(k string, grace time.Duration) {
	a.mu.Lock()
	sb, ok := a.sandboxes[k]
	delete(a.sandboxes, k)
	a.mu.Unlock()
	if !ok {
		return
	}
	a.stopProbers(types.UID(sb.uid))
	a.stopContainers(sb.uid, grace)
	a.net.remove(sb.netns, sb.uid)
	a.ipam.release(sb.ip)
	a.cfg.Log.Info("pod network removed", "pod", k, "ip", sb.ip)
}

// updateStatus reports addresses, container states, phase and conditions.
func (a *Agent) updateStatus(ctx context.Context, pod *corev1.Pod, sb sandbox, ps *podState) error {
	st := pod.Status.DeepCopy()
	st.PodIP, st.PodIPs = sb.ip.String(), []corev1.PodIP{{IP: sb.ip.String()}}
	st.HostIP, st.HostIPs = a.nodeIP().String(), []corev1.HostIP{{IP: a.nodeIP().String()}}
	if st.StartTime == nil {
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		st.StartTime = &now
	}
	st.InitContainerStatuses = nil
	initDone, initFailed := 0, false
	for _, ctr := range pod.Spec.InitContainers {
		c := ps.Containers[ctr.Name]
		cs := containerStatus(pod, ctr, c, false, false)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			cs.Ready = true
			initDone++
		} else if t != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			initFailed = true
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	initialized := initDone == len(pod.Spec.InitContainers)
	st.ContainerStatuses = nil
	running, succeeded, failed := 0, 0, 0
	readyCount := 0
	for _, ctr := range pod.Spec.Containers {
		c := ps.Containers[ctr.Name]
		var ready, started bool
		if c != nil {
			ready, started = a.probeResults(pod.UID, ctr.Name, c.RestartCount)
		}
		cs := containerStatus(pod, ctr, c, ready, started)
		if w := cs.State.Waiting; w != nil && !initialized && w.Reason == "ContainerCreating" {
			w.Reason = "PodInitializing"
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if cs.Ready {
			readyCount++
		}
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			succeeded++
		case cs.State.Terminated != nil:
			failed++
		}
	}
	n := len(pod.Spec.Containers)
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initialized:
		st.Phase = corev1.PodPending
	case succeeded+failed == n && failed == 0:
		st.Phase = corev1.PodSucceeded
	case succeeded+failed == n:
		st.Phase = corev1.PodFailed
	case running > 0 || succeeded+failed > 0:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	ready := readyCount == n
	reason := map[bool]string{true: "", false: "ContainersNotReady"}[ready]
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		reason = "PodCompleted"
	}
	for _, c := range []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: condition(initialized), Reason: map[bool]string{true: "", false: "ContainersNotInitialized"}[initialized]},
		{Type: corev1.ContainersReady, Status: condition(ready), Reason: reason},
		{Type: corev1.PodReady, Status: condition(ready), Reason: reason},
	} {
		st.Conditions = setPodCondition(st.Conditions, c)
	}
	if apiequality.Semantic.DeepEqual(st, &pod.Status) {
		return nil
	}
	_, err := a.cfg.API.Update(ctx, a.podRes, pod.Namespace, pod.Name, "status", func(cur store.Object) (store.Object, error) {
		if cur.GetUID() != pod.UID {
			return nil, apierrors.NewConflict(a.podRes.GroupResource(), pod.Name, errors.New("pod replaced"))
		}
		cur.(*corev1.Pod).Status = *st
		return cur, nil
	}, false)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		a.loop.Enqueue(key(pod))
		return nil
	}
	return err
}

func condition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

func terminated(r *exitRecord) *corev1.ContainerStateTerminated {
	reason := "Completed"
	if r.ExitCode != 0 {
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{ExitCode: r.ExitCode, Reason: reason, Message: r.Error,
		StartedAt: metav1.NewTime(r.StartedAt.Truncate(time.Second)), FinishedAt: metav1.NewTime(r.FinishedAt.Truncate(time.Second))}
}

// containerStatus reports one container as the kubelet would.
func containerStatus(pod *corev1.Pod, ctr corev1.Container, c *containerState, ready, started bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image, ImageID: "minicluster://" + imageName(ctr.Image)}
	if c == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		return cs
	}
	cs.RestartCount = c.RestartCount
	if c.Last != nil {
		cs.LastTerminationState.Terminated = terminated(c.Last)
	}
	switch {
	case c.Waiting != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Waiting, Message: c.Message}
	case c.alive():
		cs.ContainerID = fmt.Sprintf("minicluster://%s/%s/%d", pod.UID, ctr.Name, c.RestartCount)
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		cs.Ready, cs.Started = ready, ptr.To(started)
	case c.Exit != nil && !c.NextStart.IsZero():
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backoff(c.RestartCount), ctr.Name, pod.Name, pod.Namespace, pod.UID)}
		cs.LastTerminationState.Terminated = terminated(c.Exit)
	case c.Exit != nil:
		cs.State.Terminated = terminated(c.Exit)
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}

// setPodCondition sets c, keeping the transition time when its status is unchanged.
func setPodCondition(conds []corev1.PodCondition, c corev1.PodCondition) []corev1.PodCondition {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range conds {
		if conds[i].Type == c.Type {
			if conds[i].Status != c.Status {
				c.LastTransitionTime = now
			} else {
				c.LastTransitionTime = conds[i].LastTransitionTime
			}
			conds[i] = c
			return conds
		}
	}
	c.LastTransitionTime = now
	return append(conds, c)
}
