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
	return a.fail(ctx, pod, 0, "Evicted", msg, &corev1.PodCondition{Type: corev1.DisruptionTarget,
		Status: corev1.ConditionTrue, Reason: "TerminationByKubelet", Message: msg, LastTransitionTime: metav1.Now()})
}

// deadlineMessage is the kubelet's, for a pod past its activeDeadlineSeconds.
const deadlineMessage = "Pod was active on the node longer than the specified deadline"

// pastDeadline says how long pod has left before its activeDeadlineSeconds (counted
// from its start on the node, as the kubelet's ActiveDeadlineHandler), and whether it
// has one.
func pastDeadline(pod *corev1.Pod, now time.Time) (left time.Duration, has bool) {
	d := pod.Spec.ActiveDeadlineSeconds
	if d == nil || pod.Status.StartTime == nil {
		return 0, false
	}
	return time.Duration(*d)*time.Second - now.Sub(pod.Status.StartTime.Time), true
}

// fail kills pod's containers within grace and leaves it Failed with reason and msg
// (and cond, when set), as the kubelet ends a pod it gives up on.
func (a *Agent) fail(ctx context.Context, pod *corev1.Pod, grace time.Duration, reason, msg string, cond *corev1.PodCondition) error {
	a.killContainers(ctx, pod, grace)
	next := pod.DeepCopy()
	next.Status.Phase, next.Status.Reason, next.Status.Message = corev1.PodFailed, reason, msg
	// The containers as they ended.
	st := a.rt.State(string(pod.UID))
	next.Status.ContainerStatuses = nil
	for _, ctr := range pod.Spec.Containers {
		c := st.Containers[ctr.Name]
		if c != nil {
			a.rt.CollectExit(string(pod.UID), ctr.Name, c)
		}
		cs := a.containerStatus(pod, ctr, c, false, false)
		a.setImageID(&cs)
		next.Status.ContainerStatuses = append(next.Status.ContainerStatuses, cs)
	}
	for _, t := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		next.Status.Conditions = setPodCondition(next.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodFailed"})
	}
	if cond != nil {
		next.Status.Conditions = setPodCondition(next.Status.Conditions, *cond)
	}
	_, err := a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
