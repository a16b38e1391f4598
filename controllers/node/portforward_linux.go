package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
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
	target, err := netns.GetFromName(a.net.netnsName(pod.Namespace, pod.Name))
	if err != nil {
		return nil, fmt.Errorf("pod %s has no network namespace: %w", pod.Name, err)
	}
	defer target.Close()
	// The socket is made in the namespace of the thread that makes it: dial from a
	// goroutine on a thread of its own moved there. If it cannot move back, the thread
	// ends with the goroutine.
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if serr := netns.Set(orig); serr != nil {
			if conn != nil {
				conn.Close()
			}
			done <- result{err: errors.Join(err, serr)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}
