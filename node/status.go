package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/node/images"
	"github.com/minicluster/minicluster/node/runtime"
	"github.com/minicluster/minicluster/node/runtime/shim"
	"github.com/minicluster/minicluster/node/sandbox"
)

// updateStatus reports addresses, container states, phase and conditions.
func (a *Agent) updateStatus(ctx context.Context, pod *corev1.Pod, sb sandbox.Sandbox, ps *runtime.PodState) error {
	st := pod.Status.DeepCopy()
	st.PodIP, st.PodIPs = sb.IP.String(), []corev1.PodIP{{IP: sb.IP.String()}}
	st.HostIP, st.HostIPs = a.nodeIP().String(), []corev1.HostIP{{IP: a.nodeIP().String()}}
	if st.StartTime == nil {
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		st.StartTime = &now
	}
	st.InitContainerStatuses = nil
	initFailed := false
	var incomplete []string // the kubelet's Initialized condition names them
	for _, ctr := range pod.Spec.InitContainers {
		c := ps.Containers[ctr.Name]
		cs := a.containerStatus(pod, ctr, c, false, false)
		a.setImageID(&cs)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			cs.Ready = true
		} else {
			incomplete = append(incomplete, ctr.Name)
			if t != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				initFailed = true
			}
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	initialized := len(incomplete) == 0
	st.ContainerStatuses = nil
	running, succeeded, failed := 0, 0, 0
	var unready []string
	for _, ctr := range pod.Spec.Containers {
		c := ps.Containers[ctr.Name]
		var ready, started bool
		if c != nil {
			ready, started = a.probes.results(pod.UID, ctr.Name, c.RestartCount)
		}
		cs := a.containerStatus(pod, ctr, c, ready, started)
		a.setImageID(&cs)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, ctr.Name)
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
	st.EphemeralContainerStatuses = nil
	for _, e := range pod.Spec.EphemeralContainers {
		ctr := corev1.Container(e.EphemeralContainerCommon)
		cs := a.containerStatus(pod, ctr, ps.Containers[ctr.Name], false, false)
		a.setImageID(&cs)
		st.EphemeralContainerStatuses = append(st.EphemeralContainerStatuses, cs)
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
	// The conditions as the kubelet's status.Generate*Condition word them.
	initCond := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	switch {
	case st.Phase == corev1.PodSucceeded:
		initCond.Reason = "PodCompleted"
	case !initialized:
		initCond.Status, initCond.Reason = corev1.ConditionFalse, "ContainersNotInitialized"
		initCond.Message = fmt.Sprintf("containers with incomplete status: %s", incomplete)
	}
	ready := len(unready) == 0
	readyCond := corev1.PodCondition{Status: condition(ready)}
	switch {
	case st.Phase == corev1.PodSucceeded:
		readyCond.Status, readyCond.Reason = corev1.ConditionFalse, "PodCompleted"
	case st.Phase == corev1.PodFailed:
		readyCond.Status, readyCond.Reason = corev1.ConditionFalse, "PodFailed"
	case !ready:
		readyCond.Reason, readyCond.Message = "ContainersNotReady", fmt.Sprintf("containers with unready status: %s", unready)
	}
	containersReady, podReady := readyCond, readyCond
	containersReady.Type, podReady.Type = corev1.ContainersReady, corev1.PodReady
	for _, c := range []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		initCond,
		containersReady,
		podReady,
	} {
		st.Conditions = setPodCondition(st.Conditions, c)
	}
	if apiequality.Semantic.DeepEqual(st, &pod.Status) {
		return nil
	}
	next := pod.DeepCopy()
	next.Status = *st
	_, err := a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil // gone: its deletion is on its way
	}
	return err // a conflict: the newer pod is on its way, and is reconciled again
}

// setImageID names a stored image by its repository and manifest digest, as the
// kubelet reports a pulled image (docker.io/library/nginx@sha256:…).
func (a *Agent) setImageID(cs *corev1.ContainerStatus) {
	img, ok := a.rt.Images().Get(cs.Image)
	if !ok {
		return
	}
	full, err := images.Normalize(cs.Image)
	if err != nil {
		return
	}
	repo, _, _ := strings.Cut(full, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	cs.ImageID = repo + "@" + img.Digest
}

func condition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// terminated reports run `run` of ctr, which ended as r says; its message is the
// runtime's error, then the container's termination message, as the kubelet joins them.
func (a *Agent) terminated(pod *corev1.Pod, ctr corev1.Container, run int32, r *shim.ExitRecord) *corev1.ContainerStateTerminated {
	reason := "Completed"
	switch {
	case r.Reason != "":
		reason = r.Reason
	case r.ExitCode != 0:
		reason = "Error"
	}
	msg := r.Error
	// A run that could not start has no logs to fall back to (the kubelet's ContainerCannotRun).
	fallback := ctr.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && r.ExitCode != 0 && r.Error == ""
	if ctr.TerminationMessagePath != "" || fallback {
		if t := a.rt.TerminationMessage(string(pod.UID), ctr.Name, run, fallback); t != "" {
			if msg != "" {
				msg += ": "
			}
			msg += t
		}
	}
	return &corev1.ContainerStateTerminated{ExitCode: r.ExitCode, Reason: reason, Message: msg,
		StartedAt: metav1.NewTime(r.StartedAt.Truncate(time.Second)), FinishedAt: metav1.NewTime(r.FinishedAt.Truncate(time.Second))}
}

// defaultWaiting is the reason the kubelet gives a container not yet created (its
// convertToAPIContainerStatuses' default): in a pod with init containers every
// container, init, app or ephemeral, waits with PodInitializing, else ContainerCreating.
func defaultWaiting(pod *corev1.Pod) string {
	if len(pod.Spec.InitContainers) > 0 {
		return "PodInitializing"
	}
	return "ContainerCreating"
}

// containerStatus reports one container as the kubelet would.
func (a *Agent) containerStatus(pod *corev1.Pod, ctr corev1.Container, c *runtime.ContainerState, ready, started bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image, ImageID: "minicluster://" + runtime.ImageName(ctr.Image)}
	if c == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: defaultWaiting(pod)}
		return cs
	}
	cs.RestartCount = c.RestartCount
	if c.Last != nil {
		cs.LastTerminationState.Terminated = a.terminated(pod, ctr, c.RestartCount-1, c.Last)
	}
	switch {
	case c.Waiting != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Waiting, Message: c.Message}
	case c.Alive():
		cs.ContainerID = fmt.Sprintf("minicluster://%s/%s/%d", pod.UID, ctr.Name, c.RestartCount)
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		cs.Ready, cs.Started = ready, ptr.To(started)
	case c.Exit != nil && !c.NextStart.IsZero():
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backoff(c.RestartCount), ctr.Name, pod.Name, pod.Namespace, pod.UID)}
		cs.LastTerminationState.Terminated = a.terminated(pod, ctr, c.RestartCount, c.Exit)
	case c.Exit != nil:
		cs.State.Terminated = a.terminated(pod, ctr, c.RestartCount, c.Exit)
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: defaultWaiting(pod)}
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
