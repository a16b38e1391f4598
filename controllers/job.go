package controllers

import (
	"cmp"
	"context"
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

// Job runs a Job's pods to completion, as kube-controller-manager's job controller does
// for NonIndexed jobs: parallelism pods at a time until completions succeed (or, with
// no completions, until one succeeds and the rest end), a failed pod replaced after a
// back-off until backoffLimit, activeDeadlineSeconds, suspend, and
// ttlSecondsAfterFinished (the TTL-after-finished controller's part).
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
	var active []*corev1.Pod
	var succeeded, failed, ready, terminating int32
	var lastFailure time.Time
	for _, p := range owned {
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			succeeded++
		case p.Status.Phase == corev1.PodFailed:
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
			if podReady(p) {
				ready++
			}
			if job.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
				failed += int32(restarts(p)) // restarts in place count against backoffLimit
			}
		}
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
				for range missing {
					if err := c.pc.create(ctx, key, job, jobPod(job)); err != nil {
						return err
					}
				}
				st.Active += missing
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

func jobPod(job *batchv1.Job) *corev1.Pod {
	t := job.Spec.Template.DeepCopy()
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: job.Name + "-", Labels: t.Labels, Annotations: t.Annotations,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, jobKind)}}, Spec: t.Spec}
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
