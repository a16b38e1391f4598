package node

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// PortForward connects to a port of a running pod from inside its network namespace,
// as the kubelet does for `kubectl port-forward`: localhost there, so a server bound
// to 127.0.0.1 in the pod is reachable too.
func (a *Agent) PortForward(ctx context.Context, pod *corev1.Pod, port int32) (net.Conn, error) {
	if pod.Status.Phase != corev1.PodRunning {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s is not running", pod.Name))
	}
	var conn net.Conn
	var dialErr error
	err := inNetns(a.net.netnsName(pod.Namespace, pod.Name), func() {
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
