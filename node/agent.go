package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/tools/reference"

	"github.com/minicluster/minicluster/controllers"
	"github.com/minicluster/minicluster/node/runtime"
	"github.com/minicluster/minicluster/node/sandbox"
	"github.com/minicluster/minicluster/node/sysctl"
)

// Config configures the node agent.
type Config struct {
	Client kubernetes.Interface
	// Pods and Services are the shared informers the agent reads: the pods bound to
	// this node, and the services whose links pods get in their environment.
	Pods     coreinformers.PodInformer
	Services coreinformers.ServiceInformer
	// ConfigMaps and Secrets are read for volumes and environment variables.
	ConfigMaps coreinformers.ConfigMapInformer
	Secrets    coreinformers.SecretInformer
	// DataDir is the daemon's: the pod netns it made are recorded there.
	DataDir string
	// Runtime runs the containers.
	Runtime       *runtime.Runtime
	Instance      string
	NodeName      string
	PodCIDR       netip.Prefix
	ClusterDNS    netip.Addr
	ClusterDomain string
	// Version is minicluster's, reported as the node's container runtime version.
	Version string
	// Metrics, if set, gets minicluster_pod_ips_allocated.
	Metrics prometheus.Registerer
	// Recorder receives what happens to pods and their containers, as the kubelet
	// reports it (nil: nothing).
	Recorder record.EventRecorder
	Log      *slog.Logger
}

// Agent runs this node's pods: the kubelet's sync loop over a sandbox (network) and
// containers (runtime) for each, with probes, and the pods' and the Node's status.
type Agent struct {
	cfg        Config
	client     kubernetes.Interface
	pods       corelisters.PodLister
	services   corelisters.ServiceLister
	configMaps corelisters.ConfigMapLister
	secrets    corelisters.SecretLister
	synced     []cache.InformerSynced
	net        *sandbox.Network
	rt         *runtime.Runtime
	loop       *controllers.Loop
	probes     *prober
	hostDNS    resolvConf
	rec        record.EventRecorder

	mu          sync.Mutex
	sandboxes   map[string]sandbox.Sandbox // by namespace/name
	terminating sync.Map                   // UIDs of pods being stopped
	tokens      sync.Map                   // "uid/volume/path" → issuedToken
	pulls       sync.Map                   // "uid/container" → pullState after a failed pull
	ctx         context.Context            // Run's: pulls end with it
	hostIP      atomic.Value               // netip.Addr: the node's InternalIP
	// background are the terminations and probe loops, beside the workers.
	background sync.WaitGroup
}

// heartbeat is how often the Node's Ready condition is refreshed.
const heartbeat = 30 * time.Second

// New builds the agent; nothing touches the kernel before Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil || cfg.Pods == nil || cfg.Services == nil || cfg.ConfigMaps == nil || cfg.Secrets == nil || cfg.Runtime == nil || cfg.Instance == "" ||
		!cfg.PodCIDR.IsValid() || cfg.NodeName == "" {
		return nil, errors.New("node agent: client, informers, runtime, instance, node name and pod CIDR are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	a := &Agent{cfg: cfg, client: cfg.Client, pods: cfg.Pods.Lister(), services: cfg.Services.Lister(),
		configMaps: cfg.ConfigMaps.Lister(), secrets: cfg.Secrets.Lister(),
		synced: []cache.InformerSynced{cfg.Pods.Informer().HasSynced, cfg.Services.Informer().HasSynced,
			cfg.ConfigMaps.Informer().HasSynced, cfg.Secrets.Informer().HasSynced},
		net: sandbox.New(sandbox.Config{Instance: cfg.Instance, CIDR: cfg.PodCIDR, StateDir: netnsStateDir(cfg.DataDir), Log: cfg.Log}),
		rt:  cfg.Runtime, rec: cfg.Recorder, sandboxes: map[string]sandbox.Sandbox{}}
	a.loop = controllers.NewLoop("node", cfg.Log, a.reconcile)
	a.probes = &prober{agent: a}
	cfg.Pods.Informer().AddEventHandler(cache.FilteringResourceEventHandler{Handler: a.loop.Handler(),
		FilterFunc: func(obj any) bool {
			p, ok := obj.(*corev1.Pod)
			return !ok || p.Spec.NodeName == cfg.NodeName // a deletion's tombstone too
		}})
	if cfg.Metrics != nil {
		err := cfg.Metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "minicluster_pod_ips_allocated",
			Help: "Pod addresses the node agent holds (one per pod sandbox)."}, func() float64 { return float64(a.net.Allocated()) }))
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
// reconciles pods until ctx is cancelled. Sandboxes and containers stay when it stops.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.net.Setup(); err != nil {
		return fmt.Errorf("node network: %w", err)
	}
	if err := a.registerNode(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return nil
	}
	if err := a.adopt(ctx); err != nil {
		return fmt.Errorf("adopt sandboxes: %w", err)
	}
	a.repairBridge() // veths left off a bridge deleted while the daemon was down
	a.probes.ctx, a.ctx = ctx, ctx
	var wg sync.WaitGroup
	wg.Go(func() { a.heartbeats(ctx) })
	wg.Go(func() { a.resync(ctx) })
	a.loop.Run(ctx, 4)
	wg.Wait()
	a.background.Wait()
	return nil
}

// resyncPeriod is how often every pod on the node is looked at again, so what changed
// behind the daemon's back (a veth or netns deleted, say) is found without an event.
var resyncPeriod = 10 * time.Second

// resync enqueues the pods whose shims ended, and every pod now and then; it repairs
// the bridge at once when the kernel says it was deleted.
func (a *Agent) resync(ctx context.Context) {
	t := time.NewTicker(resyncPeriod)
	defer t.Stop()
	links := make(chan struct{}, 1)
	var watch sync.WaitGroup
	defer watch.Wait()
	watch.Go(func() {
		err := a.net.WatchLinks(ctx, func() {
			select {
			case links <- struct{}{}:
			default:
			}
		})
		if err != nil {
			a.cfg.Log.Warn("a deleted bridge will be repaired only by the periodic look", "err", err)
		}
	})
	for {
		select {
		case k := <-a.rt.Exits():
			a.loop.Enqueue(k)
		case <-links:
			a.repairBridge()
		case <-t.C:
			a.repairBridge()
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

// repairBridge makes the bridge again if it is gone and puts the pods' veths back on it.
func (a *Agent) repairBridge() {
	start := time.Now()
	made, err := a.net.RepairBridge()
	if err != nil {
		a.cfg.Log.Error("repair the node bridge", "err", err)
		return
	}
	n, err := a.net.Reattach()
	if err != nil {
		a.cfg.Log.Error("put pods' veths back on the bridge", "err", err)
	}
	if made || n > 0 {
		a.cfg.Log.Warn("repaired the node bridge", "remade", made, "vethsReattached", n, "took", time.Since(start))
	}
}

func key(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }

// adopt takes over sandboxes left by an earlier run whose pod still exists, and removes
// the others.
func (a *Agent) adopt(ctx context.Context) error {
	found, err := a.net.List()
	if err != nil {
		return err
	}
	pods, _ := a.pods.List(labels.Everything())
	byUID := map[string]*corev1.Pod{}
	for _, p := range pods {
		byUID[string(p.UID)] = p
	}
	for _, sb := range found {
		// Found by the UID its eth0 carries: a long name's netns ends in a hash.
		pod := byUID[sb.UID]
		if pod == nil || sb.UID == "" || a.net.NetnsName(pod.Namespace, pod.Name) != sb.Netns || !sb.IP.IsValid() {
			a.net.Remove(sandbox.Sandbox{Netns: sb.Netns, UID: sb.UID})
			a.cfg.Log.Info("removed orphaned pod network", "netns", sb.Netns)
			continue
		}
		a.net.Adopt(sb)
		a.sandboxes[key(pod)] = sb
		a.cfg.Log.Info("adopted pod network", "netns", sb.Netns, "ip", sb.IP)
	}
	defer a.syncHostPorts()
	// hostNetwork pods have no sandbox of their own: their containers say they exist.
	for _, uid := range a.rt.Pods() {
		for _, p := range pods {
			if string(p.UID) == uid && p.Spec.HostNetwork && p.Spec.NodeName == a.cfg.NodeName {
				a.sandboxes[key(p)] = a.hostSandbox(p)
			}
		}
	}
	a.rt.KillStrays()
	// Containers of pods that went away while the daemon was down.
	for _, uid := range a.rt.Pods() {
		if !a.hasSandbox(uid) {
			if err := a.rt.Stop(ctx, uid, forcedGrace); err != nil {
				return err
			}
			a.cfg.Log.Info("stopped containers of a vanished pod", "uid", uid)
		}
	}
	return nil
}

// admitted says whether the pod has its sandbox on this node (it was admitted).
func (a *Agent) admitted(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hasSandbox(string(uid))
}

func (a *Agent) hasSandbox(uid string) bool {
	for _, sb := range a.sandboxes {
		if sb.UID == uid {
			return true
		}
	}
	return false
}

func (a *Agent) reconcile(ctx context.Context, k string) error {
	ns, name, _ := strings.Cut(k, "/")
	pod, err := a.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		a.teardown(ctx, k)
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != a.cfg.NodeName {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		a.terminate(ctx, pod)
		return nil
	}
	if ok, err := a.admit(ctx, pod); !ok {
		return err
	}
	sb, err := a.ensureSandbox(ctx, pod)
	if err != nil {
		// As the kubelet: the pod stays Pending, and says why (issue 19: pods stayed
		// Pending with only a log line when the pod range was used up).
		a.podEvent(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil // finished pods stay as they ended
	}
	vols, err := a.setupVolumes(ctx, pod)
	if me := (*mountError)(nil); errors.As(err, &me) {
		a.podEvent(pod, corev1.EventTypeWarning, "FailedMount", "%s", me)
		a.loop.EnqueueAfter(k, 2*time.Second)
		return a.updateStatus(ctx, pod, sb, a.rt.State(string(pod.UID)))
	}
	if err != nil {
		return err
	}
	if left, has := pastDeadline(pod, time.Now()); has && left <= 0 {
		a.podEvent(pod, corev1.EventTypeNormal, "DeadlineExceeded", deadlineMessage)
		return a.fail(ctx, pod, killGrace(pod, nil), "DeadlineExceeded", deadlineMessage, nil)
	} else if has {
		a.loop.EnqueueAfter(k, left)
	}
	st, requeue, err := a.syncContainers(pod, sb, vols)
	if err != nil {
		return err
	}
	if msg, limited := a.overStorageLimit(pod, st); msg != "" {
		return a.evict(ctx, pod, msg)
	} else if limited && (requeue == 0 || requeue > storageCheckEvery) {
		requeue = storageCheckEvery
	}
	if requeue > 0 {
		a.loop.EnqueueAfter(k, requeue)
	}
	return a.updateStatus(ctx, pod, sb, st)
}

func (a *Agent) ensureSandbox(ctx context.Context, pod *corev1.Pod) (sandbox.Sandbox, error) {
	k := key(pod)
	a.mu.Lock()
	sb, ok := a.sandboxes[k]
	a.mu.Unlock()
	if ok && sb.UID == string(pod.UID) && sb.Netns == "" {
		return sb, nil // the node's own network
	}
	if ok && sb.UID == string(pod.UID) {
		what, err := a.net.Repair(sb)
		switch {
		case what == "":
			return sb, nil
		case what != "netns":
			a.cfg.Log.Warn("repaired the pod's network", "pod", k, "repaired", what, "err", err)
			return sb, err
		}
		// Its netns was removed: as the kubelet does with a dead sandbox, a new one,
		// and the containers start again in it.
		a.cfg.Log.Warn("the pod's network namespace was removed; recreating the pod's sandbox", "pod", k, "netns", sb.Netns)
	}
	if ok {
		a.teardown(ctx, k) // a pod of the same name was replaced, or its sandbox was lost
	}
	if pod.Spec.HostNetwork {
		sb := a.hostSandbox(pod)
		if err := a.rt.PodNamespaces(string(pod.UID), "", pod.Spec.HostIPC, podSysctls(pod)); err != nil {
			return sandbox.Sandbox{}, fmt.Errorf("pod %s namespaces: %w", k, err)
		}
		a.mu.Lock()
		a.sandboxes[k] = sb
		a.mu.Unlock()
		return sb, nil
	}
	sb, err := a.net.Create(pod.Namespace, pod.Name, string(pod.UID))
	if err != nil {
		return sandbox.Sandbox{}, fmt.Errorf("pod %s network: %w", k, err)
	}
	rc := podResolvConf(pod, a.cfg.ClusterDNS, a.cfg.ClusterDomain, a.hostDNS)
	if err := sandbox.WriteFile(sb.Netns, "resolv.conf", rc.String()); err != nil {
		a.cfg.Log.Warn("write resolv.conf", "pod", k, "err", err)
	}
	// The pod's IPC namespace, and its sysctls set in its own namespaces, as a runtime
	// does with the sandbox.
	if err := a.rt.PodNamespaces(string(pod.UID), sb.Netns, pod.Spec.HostIPC, podSysctls(pod)); err != nil {
		a.net.Remove(sb)
		return sandbox.Sandbox{}, fmt.Errorf("pod %s namespaces: %w", k, err)
	}
	a.mu.Lock()
	a.sandboxes[k] = sb
	a.mu.Unlock()
	a.cfg.Log.Info("pod network ready", "pod", k, "ip", sb.IP, "netns", sb.Netns)
	a.syncHostPorts()
	return sb, nil
}

func podSysctls(pod *corev1.Pod) []corev1.Sysctl {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.Sysctls
	}
	return nil
}

// admit refuses, as the kubelet's sysctl admission does, a pod with a sysctl it does
// not allow (not one of the safe ones, or of a namespace the pod shares with the
// node): the pod fails with SysctlForbidden and nothing of it is made. It reports
// whether the pod may run.
// admit is the kubelet's admission of a pod new to the node: its sysctls must be
// allowed, and its host ports free of the pods admitted before it. A rejected pod fails
// for good, as the kubelet's rejectPod leaves it.
func (a *Agent) admit(ctx context.Context, pod *corev1.Pod) (bool, error) {
	if pod.Status.Phase == corev1.PodFailed && !a.admitted(pod.UID) {
		return false, nil // rejected already
	}
	for _, s := range podSysctls(pod) {
		if forbidden := sysctl.Forbidden(s.Name, pod.Spec.HostNetwork, pod.Spec.HostIPC); forbidden != nil {
			return false, a.reject(ctx, pod, "SysctlForbidden", fmt.Sprintf("forbidden sysctl: %v", forbidden))
		}
	}
	if !a.admitted(pod.UID) && a.hostPortTaken(pod) {
		return false, a.reject(ctx, pod, "NodePorts", "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports")
	}
	return true, nil
}

// reject fails pod as the kubelet's rejectPod: an event, and the pod Failed with the reason.
func (a *Agent) reject(ctx context.Context, pod *corev1.Pod, reason, msg string) error {
	a.podEvent(pod, corev1.EventTypeWarning, reason, "%s", msg)
	next := pod.DeepCopy()
	next.Status.Phase, next.Status.Reason, next.Status.Message = corev1.PodFailed, reason, "Pod was rejected: "+msg
	_, err := a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// hostPortTaken says whether a pod already running on this node holds one of pod's
// host ports (same protocol and port, overlapping host IPs).
func (a *Agent) hostPortTaken(pod *corev1.Pod) bool {
	type hp struct {
		proto corev1.Protocol
		port  int32
	}
	wanted := map[hp][]string{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort > 0 {
				k := hp{cmp.Or(p.Protocol, corev1.ProtocolTCP), p.HostPort}
				wanted[k] = append(wanted[k], p.HostIP)
			}
		}
	}
	if len(wanted) == 0 {
		return false
	}
	others, _ := a.pods.List(labels.Everything())
	for _, o := range others {
		if o.UID == pod.UID || o.Spec.NodeName != a.cfg.NodeName || !a.admitted(o.UID) ||
			o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range o.Spec.Containers {
			for _, p := range c.Ports {
				for _, ip := range wanted[hp{cmp.Or(p.Protocol, corev1.ProtocolTCP), p.HostPort}] {
					if p.HostPort > 0 && (ip == "" || ip == "0.0.0.0" || p.HostIP == "" || p.HostIP == "0.0.0.0" || ip == p.HostIP) {
						return true
					}
				}
			}
		}
	}
	return false
}

// syncHostPorts forwards the hostPorts of this node's pod-network pods from the node,
// as the portmap CNI plugin does (a hostNetwork pod's ports are the node's already).
func (a *Agent) syncHostPorts() {
	var ports []sandbox.HostPort
	a.mu.Lock()
	for k, sb := range a.sandboxes {
		ns, name, _ := strings.Cut(k, "/")
		pod, err := a.pods.Pods(ns).Get(name)
		if sb.Netns == "" || err != nil || string(pod.UID) != sb.UID {
			continue
		}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.HostPort <= 0 {
					continue
				}
				hostIP, _ := netip.ParseAddr(p.HostIP)
				ports = append(ports, sandbox.HostPort{Protocol: strings.ToLower(string(cmp.Or(p.Protocol, corev1.ProtocolTCP))),
					Port: uint16(p.HostPort), HostIP: hostIP, PodIP: sb.IP, PodPort: uint16(p.ContainerPort)})
			}
		}
	}
	a.mu.Unlock()
	if err := a.net.SetHostPorts(ports); err != nil {
		a.cfg.Log.Error("host ports", "err", err)
	}
}

// hostSandbox is the sandbox of a hostNetwork pod: the node's own network namespace
// (no netns of its own) and address.
func (a *Agent) hostSandbox(pod *corev1.Pod) sandbox.Sandbox {
	return sandbox.Sandbox{UID: string(pod.UID), IP: a.nodeIP()}
}

// forcedGrace is how long containers of a pod deleted without waiting for its node
// (grace 0, or gone while the daemon was down) get after SIGTERM.
const forcedGrace = 2 * time.Second

// terminate stops a pod marked for deletion within its grace period, then deletes it for
// good; it runs once per pod, beside the workers. When ctx ends first the pod stays
// marked, and the next run of the agent stops it.
func (a *Agent) terminate(ctx context.Context, pod *corev1.Pod) {
	if _, busy := a.terminating.LoadOrStore(pod.UID, true); busy {
		return
	}
	grace := forcedGrace
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	a.background.Go(func() {
		defer a.terminating.Delete(pod.UID)
		a.killContainers(ctx, pod, grace)
		if err := a.teardownWithin(ctx, key(pod), forcedGrace); err != nil { // the pod's init, and what outlived its SIGKILL
			return
		}
		zero := int64(0)
		err := a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name,
			metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
			a.cfg.Log.Error("delete terminated pod", "pod", key(pod), "err", err)
			a.loop.EnqueueAfter(key(pod), time.Second)
		}
	})
}

func (a *Agent) teardown(ctx context.Context, k string) { a.teardownWithin(ctx, k, forcedGrace) }

// teardownWithin stops the pod's containers (SIGTERM, SIGKILL after grace) and removes
// its network; it gives up, leaving both, when ctx ends first.
func (a *Agent) teardownWithin(ctx context.Context, k string, grace time.Duration) error {
	a.mu.Lock()
	sb, ok := a.sandboxes[k]
	a.mu.Unlock()
	if !ok {
		return nil
	}
	a.probes.stop(types.UID(sb.UID))
	if err := a.rt.Stop(ctx, sb.UID, grace); err != nil {
		return err
	}
	// A termination and a reconcile may both get here: one removes the network.
	a.mu.Lock()
	cur, ok := a.sandboxes[k]
	ours := ok && cur.UID == sb.UID
	if ours {
		delete(a.sandboxes, k)
	}
	a.tokens.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), sb.UID+"/") {
			a.tokens.Delete(k)
		}
		return true
	})
	a.mu.Unlock()
	if ours && sb.Netns != "" {
		a.syncHostPorts()
		a.net.Remove(sb)
		a.cfg.Log.Info("pod network removed", "pod", k, "ip", sb.IP)
	}
	return nil
}

// containerEvent records an event about one container of a pod, as the kubelet does.
func (a *Agent) containerEvent(pod *corev1.Pod, container, eventType, reason, format string, args ...any) {
	ref, err := reference.GetPartialReference(scheme.Scheme, pod, fmt.Sprintf("spec.containers{%s}", container))
	if err != nil {
		return
	}
	a.rec.Eventf(ref, eventType, reason, format, args...)
}

// podEvent records an event about a pod, as the kubelet does.
func (a *Agent) podEvent(pod *corev1.Pod, eventType, reason, format string, args ...any) {
	a.rec.Eventf(pod, eventType, reason, format, args...)
}

// PortForward connects to a port of a running pod from inside its network namespace,
// as the kubelet does for `kubectl port-forward`: localhost there, so a server bound
// to 127.0.0.1 in the pod is reachable too.
func (a *Agent) PortForward(ctx context.Context, pod *corev1.Pod, port int32) (net.Conn, error) {
	if pod.Status.Phase != corev1.PodRunning {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s is not running", pod.Name))
	}
	var conn net.Conn
	var dialErr error
	netnsName := a.net.NetnsName(pod.Namespace, pod.Name)
	if pod.Spec.HostNetwork {
		netnsName = ""
	}
	err := sandbox.Do(netnsName, func() {
		var d net.Dialer
		conn, dialErr = d.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("pod %s network namespace: %w", pod.Name, err)
	}
	return conn, dialErr
}

// Cleanup removes what an instance created (run it with the daemon stopped): container
// processes (found through the data dir's pod records), then pod netns, veths, the
// masquerade table and the bridge.
func Cleanup(instance, dataDir string, log *slog.Logger) error {
	runtime.Cleanup(dataDir, log)
	return sandbox.Cleanup(instance, netnsStateDir(dataDir), log)
}

// netnsStateDir records the pod netns the daemon of a data dir made.
func netnsStateDir(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "netns")
}
