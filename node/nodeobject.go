package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// nodeIP is the node's InternalIP, as last found (listing every address costs more the
// more pods there are, so it is looked up at start and with each heartbeat).
func (a *Agent) nodeIP() netip.Addr {
	if ip, ok := a.hostIP.Load().(netip.Addr); ok {
		return ip
	}
	return a.refreshNodeIP()
}

// refreshNodeIP finds the first global IPv4 address outside the pod CIDR, else the
// bridge address (a node alone in a test netns has no other).
func (a *Agent) refreshNodeIP() netip.Addr {
	ip := a.findNodeIP()
	a.hostIP.Store(ip)
	return ip
}

func (a *Agent) findNodeIP() netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	for _, ad := range addrs {
		ipn, ok := ad.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() && !a.cfg.PodCIDR.Contains(ip.Unmap()) {
			return ip.Unmap()
		}
	}
	return a.net.Gateway()
}

// nodeCapacity is what the node offers: its CPUs, memory and 110 pods, as the kubelet.
func nodeCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourcePods:   resource.MustParse("110"),
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memoryBytes(), resource.BinarySI),
	}
}

func (a *Agent) nodeStatus() corev1.NodeStatus {
	a.refreshNodeIP()
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	var uts syscall.Utsname
	syscall.Uname(&uts)
	capacity := nodeCapacity()
	return corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "minicluster node agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a.nodeIP().String()},
			{Type: corev1.NodeHostName, Address: a.cfg.NodeName}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.32.0-minicluster", KubeProxyVersion: "v1.32.0-minicluster",
			ContainerRuntimeVersion: "minicluster://" + a.cfg.Version, OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH,
			KernelVersion: utsString(uts.Release[:]), OSImage: osImage()},
	}
}

func (a *Agent) registerNode(ctx context.Context) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
		"kubernetes.io/hostname": a.cfg.NodeName, "kubernetes.io/os": goruntime.GOOS, "kubernetes.io/arch": goruntime.GOARCH,
		"node-role.kubernetes.io/control-plane": ""}},
		Spec: corev1.NodeSpec{PodCIDR: a.cfg.PodCIDR.String(), PodCIDRs: []string{a.cfg.PodCIDR.String()}}}
	if _, err := a.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := a.renewLease(ctx); err != nil { // not needed to run pods: retried with the heartbeats
		a.cfg.Log.Warn("node lease", "err", err)
	}
	return a.postStatus(ctx)
}

func (a *Agent) postStatus(ctx context.Context) error {
	st := a.nodeStatus()
	nodes := a.client.CoreV1().Nodes()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, old := range node.Status.Conditions {
			if old.Type == corev1.NodeReady && old.Status == corev1.ConditionTrue {
				st.Conditions[0].LastTransitionTime = old.LastTransitionTime
			}
		}
		node.Status = st
		_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

func (a *Agent) heartbeats(ctx context.Context) {
	status, lease := time.NewTicker(heartbeat), time.NewTicker(leaseRenew)
	defer status.Stop()
	defer lease.Stop()
	for {
		var err error
		select {
		case <-status.C:
			err = a.postStatus(ctx)
		case <-lease.C:
			err = a.renewLease(ctx)
		case <-ctx.Done():
			return
		}
		if err != nil && ctx.Err() == nil {
			a.cfg.Log.Warn("node heartbeat", "err", err)
		}
	}
}

// The kubelet's lease: renewed every 10 s, valid for 40.
const (
	leaseRenew    = 10 * time.Second
	leaseDuration = 40
)

// renewLease keeps kube-node-lease/<node> held by this node, as the kubelet does; the
// Node owns it.
func (a *Agent) renewLease(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if !apierrors.IsNotFound(err) {
		return err
	}
	n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To[int32](leaseDuration), RenewTime: &now}}
	_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	return err
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func osImage() string {
	data, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func memoryBytes() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
