package node

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/node/runtime"
)

// storageCheckEvery is how often a pod with ephemeral-storage limits is measured (the
// kubelet's eviction manager looks every 10 s).
const storageCheckEvery = 5 * time.Second

// overStorageLimit names the first running container of pod whose writable layer holds
// more than its ephemeral-storage limit, in the kubelet's words ("" when none does), and
// whether pod has any such limit at all (then it is measured again later).
func (a *Agent) overStorageLimit(pod *corev1.Pod, st *runtime.PodState) (msg string, limited bool) {
	for _, ctr := range pod.Spec.Containers {
		limit, ok := ctr.Resources.Limits[corev1.ResourceEphemeralStorage]
		if !ok {
			continue
		}
		limited = true
		c := st.Containers[ctr.Name]
		if c == nil || !c.Alive() {
			continue
		}
		used, err := a.rt.RootUsage(c)
		if err != nil {
			a.cfg.Log.Debug("container storage not measured", "pod", key(pod), "container", ctr.Name, "err", err)
			continue
		}
		if used > limit.Value() {
			return fmt.Sprintf("Container %s exceeded its local ephemeral storage limit %q. ", ctr.Name, limit.String()), true
		}
	}
	return "", limited
}

// evict ends pod as the kubelet's eviction manager does for a storage limit: an Evicted
// event, its containers killed at once, the pod Failed with reason Evicted and a
// DisruptionTarget condition.
func (a *Agent) evict(ctx context.Context, pod *corev1.Pod, msg string) error {
	a.cfg.Log.Info("evicting pod", "pod", key(pod), "reason", msg)
	a.podEvent(pod, corev1.EventTypeWarning, "Evicted", "%s", msg)
	a.killContainers(ctx, pod, 0)
	next := pod.DeepCopy()
	next.Status.Phase, next.Status.Reason, next.Status.Message = corev1.PodFailed, "Evicted", msg
	next.Status.Conditions = setPodCondition(next.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
		Status: corev1.ConditionTrue, Reason: "TerminationByKubelet", Message: msg, LastTransitionTime: metav1.Now()})
	_, err := a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
