package controllers

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// Job runs a Job's pods to completion, as kube-controller-manager's job controller does:
// parallelism pods at a time until completions succeed (or, with no completions, until
// one succeeds and the rest end); Indexed jobs give each pod an index (annotation,
// label, JOB_COMPLETION_INDEX, hostname <job>-<index>) and complete when every index has
// succeeded once; a failed pod is replaced after a back-off until backoffLimit, unless
// the pod failure policy ignores its failure or fails the job at once;
// activeDeadlineSeconds, suspend, and ttlSecondsAfterFinished (the TTL-after-finished
// controller's part).
type Job struct {
	client kubernetes.Interface
	jobs   batchlisters.JobLister
	pc     *podControl
	synced []cache.InformerSynced
	loop   *Loop
	now    func() time.Time
	rec    record.EventRecorder
}

var jobKind = batchv1.SchemeGroupVersion.WithKind("Job")

// NewJob builds the controller.
func NewJob(cfg WorkloadConfig) *Job {
	cfg.defaults()
	jInf, podInf := cfg.Informers.Batch().V1().Jobs(), cfg.Informers.Core().V1().Pods()
	c := &Job{client: cfg.Client, jobs: jInf.Lister(), pc: newPodControl(cfg.Client, podInf.Lister(), cfg.Recorder, jobKind), now: time.Now,
		rec: cfg.Recorder, synced: []cache.InformerSynced{jInf.Informer().HasSynced, podInf.Informer().HasSynced}}
	c.loop = NewLoop("job", cfg.Log, c.reconcile)
	jInf.Informer().AddEventHandler(c.loop.Handler())
	podInf.Informer().AddEventHandler(c.pc.expect.handler())
	podInf.Informer().AddEventHandler(ownerHandler(c.loop, "Job"))
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Job) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.synced...)
	return nil
}

// backoff is the delay before a failed pod is replaced: 10 s doubling per failure, at
// most 6 minutes (Kubernetes' DefaultJobPodFailureBackOff and its cap).
func backoff(failed int32) time.Duration {
	d := 10 * time.Second
	for i := int32(1); i < failed && d < 6*time.Minute; i++ {
		d *= 2
	}
	return min(d, 6*time.Minute)
}

func finishedCondition(j *batchv1.Job) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func (c *Job) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.pc.expect.forget(key)
		return nil
	}
	if err != nil || job.DeletionTimestamp != nil {
		return err
	}
	now := c.now()
	if done := finishedCondition(job); done != nil {
		return c.expire(ctx, job, done, now)
	}
	owned, synced, err := c.pc.claim(ctx, key, job, job.Spec.Selector)
	if err != nil || !synced {
		return cmp.Or(err, ErrRequeue)
	}
	st := job.Status.DeepCopy()
	indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
	var active []*corev1.Pod
	var succeeded, failed, ready, terminating int32
	var lastFailure time.Time
	var policyFailure string // the pod failure policy's FailJob message
	completed, running := parseIndexes(st.CompletedIndexes), map[int]bool{}
	for _, p := range owned {
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			succeeded++
			if i, ok := completionIndex(p); ok && indexed && i < int(ptr.Deref(job.Spec.Completions, 0)) {
				completed[i] = true
			}
		case p.Status.Phase == corev1.PodFailed:
			action, msg := failurePolicyAction(job, p)
			switch action {
			case batchv1.PodFailurePolicyActionIgnore:
				continue // not counted against backoffLimit
			case batchv1.PodFailurePolicyActionFailJob:
				policyFailure = cmp.Or(policyFailure, msg)
			}
			failed++
			for _, cs := range p.Status.ContainerStatuses {
				if t := cs.State.Terminated; t != nil && t.FinishedAt.After(lastFailure) {
					lastFailure = t.FinishedAt.Time
				}
			}
		case p.DeletionTimestamp != nil:
			terminating++
		default:
			active = append(active, p)
			if i, ok := completionIndex(p); ok {
				running[i] = true
			}
			if podReady(p) {
				ready++
			}
			if job.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
				failed += int32(restarts(p)) // restarts in place count against backoffLimit
			}
		}
	}
	if indexed {
		st.CompletedIndexes = formatIndexes(completed)
		succeeded = int32(len(completed))
	}
	// Finished pods may be deleted by anyone: counts never go back.
	st.Succeeded, st.Failed = max(st.Succeeded, succeeded), max(st.Failed, failed)
	st.Active, st.Ready, st.Terminating = int32(len(active)), ptr.To(ready), ptr.To(terminating)
	suspended := ptr.Deref(job.Spec.Suspend, false)
	if !suspended && st.StartTime == nil {
		st.StartTime = &metav1.Time{Time: now}
	}
	var requeue time.Duration
	finish := func(typ batchv1.JobConditionType, reason, msg string) {
		interim := batchv1.JobSuccessCriteriaMet
		if typ == batchv1.JobFailed {
			interim = batchv1.JobFailureTarget
		}
		st.Conditions = setJobCondition(st.Conditions, interim, corev1.ConditionTrue, reason, msg, now)
		st.Conditions = setJobCondition(st.Conditions, typ, corev1.ConditionTrue, reason, msg, now)
		if typ == batchv1.JobComplete {
			st.CompletionTime = &metav1.Time{Time: now}
		}
	}
	completions := job.Spec.Completions
	switch {
	case policyFailure != "":
		finish(batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy, policyFailure)
		c.rec.Event(job, corev1.EventTypeWarning, batchv1.JobReasonPodFailurePolicy, policyFailure)
	case st.Failed > ptr.Deref(job.Spec.BackoffLimit, 6):
		finish(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
		c.rec.Event(job, corev1.EventTypeWarning, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
	case job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil && !suspended &&
		now.Sub(st.StartTime.Time) >= time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second:
		finish(batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline")
		c.rec.Event(job, corev1.EventTypeWarning, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline")
	case completions != nil && st.Succeeded >= *completions && len(active) == 0,
		completions == nil && st.Succeeded > 0 && len(active) == 0:
		finish(batchv1.JobComplete, "CompletionsReached", "Reached expected number of succeeded pods")
		c.rec.Event(job, corev1.EventTypeNormal, "Completed", "Job completed")
	}
	if done := finishedCondition(&batchv1.Job{Status: *st}); done != nil || suspended {
		// Nothing more runs: the active pods go.
		for _, p := range active {
			if err := c.pc.delete(ctx, key, job, p); err != nil {
				return err
			}
		}
		if suspended {
			st.Conditions = setJobCondition(st.Conditions, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now)
		}
		st.Active = 0
	} else {
		if cond := findJobCondition(st.Conditions, batchv1.JobSuspended); cond != nil && cond.Status == corev1.ConditionTrue {
			st.Conditions = setJobCondition(st.Conditions, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
		}
		want := ptr.Deref(job.Spec.Parallelism, 1)
		if completions != nil {
			want = min(want, *completions-st.Succeeded)
		} else if st.Succeeded > 0 {
			want = 0 // a work queue: once one succeeds, no new pods
		}
		if missing := want - int32(len(active)); missing > 0 {
			if wait := lastFailure.Add(backoff(st.Failed)).Sub(now); st.Failed > 0 && wait > 0 {
				requeue = wait
			} else {
				made := int32(0)
				for i := 0; made < missing && (!indexed || i < int(*completions)); i++ {
					if indexed && (completed[i] || running[i]) {
						continue
					}
					if err := c.pc.create(ctx, key, job, jobPod(job, i, indexed)); err != nil {
						return err
					}
					running[i] = true
					made++
				}
				st.Active += made
			}
		}
		if d := job.Spec.ActiveDeadlineSeconds; d != nil && st.StartTime != nil {
			left := st.StartTime.Add(time.Duration(*d) * time.Second).Sub(now)
			if requeue == 0 || left < requeue {
				requeue = max(left, time.Millisecond)
			}
		}
	}
	if !apiequality.Semantic.DeepEqual(*st, job.Status) {
		next := job.DeepCopy()
		next.Status = *st
		if _, err := c.client.BatchV1().Jobs(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return nil
			}
			return err
		}
	}
	if requeue > 0 {
		c.loop.EnqueueAfter(key, requeue)
	}
	return nil
}

// jobPod is a pod of the job; of an Indexed job, the pod of index i.
func jobPod(job *batchv1.Job, i int, indexed bool) *corev1.Pod {
	t := job.Spec.Template.DeepCopy()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: job.Name + "-", Labels: t.Labels, Annotations: t.Annotations,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, jobKind)}}, Spec: t.Spec}
	if !indexed {
		return pod
	}
	idx := strconv.Itoa(i)
	pod.GenerateName = job.Name + "-" + idx + "-"
	pod.Labels, pod.Annotations = maps.Clone(pod.Labels), maps.Clone(pod.Annotations)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Labels[batchv1.JobCompletionIndexAnnotation], pod.Annotations[batchv1.JobCompletionIndexAnnotation] = idx, idx
	if pod.Spec.Hostname == "" {
		pod.Spec.Hostname = job.Name + "-" + idx
	}
	env := corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
		FieldPath: "metadata.labels['" + batchv1.JobCompletionIndexAnnotation + "']"}}}
	for j := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[j].Env = append(pod.Spec.InitContainers[j].Env, env)
	}
	for j := range pod.Spec.Containers {
		pod.Spec.Containers[j].Env = append(pod.Spec.Containers[j].Env, env)
	}
	return pod
}

// completionIndex is the index of a pod of an Indexed job.
func completionIndex(p *corev1.Pod) (int, bool) {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(v)
	return i, err == nil && i >= 0
}

// parseIndexes reads status.completedIndexes ("1,3-5,7").
func parseIndexes(s string) map[int]bool {
	out := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := a; i <= b && i-a < 1<<20; i++ {
			out[i] = true
		}
	}
	return out
}

// formatIndexes writes indexes as status.completedIndexes does: ranges, ascending.
func formatIndexes(set map[int]bool) string {
	idx := slices.Sorted(maps.Keys(set))
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", idx[i], idx[j]))
		} else {
			parts = append(parts, strconv.Itoa(idx[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// failurePolicyAction is what the job's pod failure policy says of a failed pod: the
// action of the first rule that matches (Count when none does), and for FailJob the
// message kube-controller-manager gives.
func failurePolicyAction(job *batchv1.Job, p *corev1.Pod) (batchv1.PodFailurePolicyAction, string) {
	if job.Spec.PodFailurePolicy == nil {
		return batchv1.PodFailurePolicyActionCount, ""
	}
	for ri, rule := range job.Spec.PodFailurePolicy.Rules {
		if r := rule.OnExitCodes; r != nil {
			for _, cs := range p.Status.ContainerStatuses {
				t := cs.State.Terminated
				if t == nil || t.ExitCode == 0 || r.ContainerName != nil && *r.ContainerName != cs.Name {
					continue
				}
				if slices.Contains(r.Values, t.ExitCode) == (r.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) {
					return rule.Action, fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d",
						cs.Name, p.Namespace, p.Name, t.ExitCode, rule.Action, ri)
				}
			}
		}
		for _, pc := range rule.OnPodConditions {
			for _, c := range p.Status.Conditions {
				if c.Type == pc.Type && c.Status == pc.Status {
					return rule.Action, fmt.Sprintf("Pod %s/%s has condition %s matching %s rule at index %d", p.Namespace, p.Name, c.Type, rule.Action, ri)
				}
			}
		}
	}
	return batchv1.PodFailurePolicyActionCount, ""
}

// expire deletes a finished job once ttlSecondsAfterFinished have passed (its pods go
// with it, by the garbage collector), as the TTL-after-finished controller does.
func (c *Job) expire(ctx context.Context, job *batchv1.Job, done *batchv1.JobCondition, now time.Time) error {
	ttl := job.Spec.TTLSecondsAfterFinished
	if ttl == nil {
		return nil
	}
	if left := done.LastTransitionTime.Add(time.Duration(*ttl) * time.Second).Sub(now); left > 0 {
		c.loop.EnqueueAfter(job.Namespace+"/"+job.Name, left)
		return nil
	}
	err := c.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationForeground), Preconditions: metav1.NewUIDPreconditions(string(job.UID))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func findJobCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// setJobCondition sets a condition, keeping its times when nothing about it changes.
func setJobCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) []batchv1.JobCondition {
	if cur := findJobCondition(conds, t); cur != nil {
		if cur.Status != status || cur.Reason != reason || cur.Message != msg {
			if cur.Status != status {
				cur.LastTransitionTime = metav1.Time{Time: now}
			}
			cur.Status, cur.Reason, cur.Message, cur.LastProbeTime = status, reason, msg, metav1.Time{Time: now}
		}
		return conds
	}
	return append(conds, batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: metav1.Time{Time: now}, LastTransitionTime: metav1.Time{Time: now}})
}
