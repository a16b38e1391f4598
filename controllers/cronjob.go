package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// CronJob makes a CronJob's Jobs on its schedule, as kube-controller-manager's
// cronjob controller (v2) does: the newest missed time runs (unless past
// startingDeadlineSeconds), concurrencyPolicy Allow/Forbid/Replace, suspend, the
// history limits, and status.active/lastScheduleTime/lastSuccessfulTime.
type CronJob struct {
	client   kubernetes.Interface
	cronJobs batchlisters.CronJobLister
	jobs     batchlisters.JobLister
	synced   []cache.InformerSynced
	loop     *Loop
	now      func() time.Time
	rec      record.EventRecorder
}

var cronJobKind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// scheduledTimestampAnnotation records on a Job the time it was scheduled for.
const scheduledTimestampAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// NewCronJob builds the controller.
func NewCronJob(cfg WorkloadConfig) *CronJob {
	cfg.defaults()
	cjInf, jInf := cfg.Informers.Batch().V1().CronJobs(), cfg.Informers.Batch().V1().Jobs()
	c := &CronJob{client: cfg.Client, cronJobs: cjInf.Lister(), jobs: jInf.Lister(), now: time.Now, rec: cfg.Recorder,
		synced: []cache.InformerSynced{cjInf.Informer().HasSynced, jInf.Informer().HasSynced}}
	c.loop = NewLoop("cronjob", cfg.Log, c.reconcile)
	cjInf.Informer().AddEventHandler(c.loop.Handler())
	jInf.Informer().AddEventHandler(ownerHandler(c.loop, "CronJob"))
	return c
}

// Run reconciles until ctx is cancelled.
func (c *CronJob) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

func (c *CronJob) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cj, err := c.cronJobs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || cj.DeletionTimestamp != nil {
		return err
	}
	all, err := c.jobs.Jobs(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var owned []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOf(j); ref != nil && ref.UID == cj.UID {
			owned = append(owned, j)
		}
	}
	st := cj.Status.DeepCopy()
	st.Active = nil
	var running []*batchv1.Job
	for _, j := range owned {
		done := finishedCondition(j)
		switch {
		case done == nil:
			running = append(running, j)
			st.Active = append(st.Active, corev1.ObjectReference{Kind: "Job", Namespace: j.Namespace, Name: j.Name,
				UID: j.UID, APIVersion: "batch/v1", ResourceVersion: j.ResourceVersion})
		case done.Type == batchv1.JobComplete && j.Status.CompletionTime != nil &&
			(st.LastSuccessfulTime == nil || j.Status.CompletionTime.After(st.LastSuccessfulTime.Time)):
			st.LastSuccessfulTime = j.Status.CompletionTime.DeepCopy()
		}
	}
	if err := c.trimHistory(ctx, cj, owned); err != nil {
		return err
	}
	sched, err := cron.ParseStandard(cj.Spec.Schedule)
	if err != nil {
		return nil // validation keeps these out
	}
	now := c.now()
	loc := time.Local
	if tz := cj.Spec.TimeZone; tz != nil {
		if loc, err = time.LoadLocation(*tz); err != nil {
			return nil
		}
	}
	var next time.Duration
	if !ptr.Deref(cj.Spec.Suspend, false) {
		from := cj.CreationTimestamp.Time
		if st.LastScheduleTime != nil {
			from = st.LastScheduleTime.Time
		}
		// The newest scheduled time in (from, now], if any.
		var due time.Time
		for t := sched.Next(from.In(loc)); !t.After(now); t = sched.Next(t) {
			due = t
		}
		tooLate := cj.Spec.StartingDeadlineSeconds != nil && !due.IsZero() &&
			now.Sub(due) > time.Duration(*cj.Spec.StartingDeadlineSeconds)*time.Second
		switch {
		case due.IsZero():
		case tooLate:
			c.rec.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", due.UTC().Format(time.RFC1123Z))
			st.LastScheduleTime = &metav1.Time{Time: due}
		case len(running) > 0 && cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent:
			c.rec.Eventf(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
		default:
			if len(running) > 0 && cj.Spec.ConcurrencyPolicy == batchv1.ReplaceConcurrent {
				for _, j := range running {
					err := c.client.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
					if err != nil && !apierrors.IsNotFound(err) {
						return err
					}
					c.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %s", j.Name)
				}
				st.Active = nil
			}
			job, err := c.createJob(ctx, cj, due)
			if err != nil {
				return err
			}
			st.Active = append(st.Active, corev1.ObjectReference{Kind: "Job", Namespace: job.Namespace, Name: job.Name,
				UID: job.UID, APIVersion: "batch/v1", ResourceVersion: job.ResourceVersion})
			st.LastScheduleTime = &metav1.Time{Time: due}
		}
		next = sched.Next(now.In(loc)).Sub(now) + 100*time.Millisecond
	}
	sort.Slice(st.Active, func(i, j int) bool { return st.Active[i].Name < st.Active[j].Name })
	if !equalCronStatus(st, &cj.Status) {
		upd := cj.DeepCopy()
		upd.Status = *st
		if _, err := c.client.BatchV1().CronJobs(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return nil
			}
			return err
		}
	}
	if next > 0 {
		c.loop.EnqueueAfter(key, next)
	}
	return nil
}

func equalCronStatus(a, b *batchv1.CronJobStatus) bool {
	if len(a.Active) != len(b.Active) || !ptrTimeEqual(a.LastScheduleTime, b.LastScheduleTime) || !ptrTimeEqual(a.LastSuccessfulTime, b.LastSuccessfulTime) {
		return false
	}
	for i := range a.Active {
		if a.Active[i].UID != b.Active[i].UID {
			return false
		}
	}
	return true
}

func ptrTimeEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Unix() == b.Unix()
}

// createJob makes the Job for the scheduled time: named after the cronjob and the
// time in minutes, so a retry finds the one already made.
func (c *CronJob) createJob(ctx context.Context, cj *batchv1.CronJob, scheduled time.Time) (*batchv1.Job, error) {
	t := cj.Spec.JobTemplate.DeepCopy()
	annotations := t.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[scheduledTimestampAnnotation] = scheduled.UTC().Format(time.RFC3339)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60), Labels: t.Labels,
		Annotations: annotations, OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, cronJobKind)}}, Spec: t.Spec}
	jobs := c.client.BatchV1().Jobs(cj.Namespace)
	out, err := jobs.Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if out, err = jobs.Get(ctx, job.Name, metav1.GetOptions{}); err == nil {
			if ref := metav1.GetControllerOf(out); ref == nil || ref.UID != cj.UID {
				return nil, fmt.Errorf("job %s exists and is not %s's", job.Name, cj.Name)
			}
			return out, nil
		}
	}
	if err != nil {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return nil, err
	}
	c.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %s", out.Name)
	return out, nil
}

// trimHistory deletes the oldest finished jobs beyond the history limits.
func (c *CronJob) trimHistory(ctx context.Context, cj *batchv1.CronJob, owned []*batchv1.Job) error {
	var ok, failed []*batchv1.Job
	for _, j := range owned {
		if done := finishedCondition(j); done != nil && j.DeletionTimestamp == nil {
			if done.Type == batchv1.JobComplete {
				ok = append(ok, j)
			} else {
				failed = append(failed, j)
			}
		}
	}
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit int32
	}{{ok, ptr.Deref(cj.Spec.SuccessfulJobsHistoryLimit, 3)}, {failed, ptr.Deref(cj.Spec.FailedJobsHistoryLimit, 1)}} {
		sort.Slice(set.jobs, func(i, j int) bool { return set.jobs[i].CreationTimestamp.Before(&set.jobs[j].CreationTimestamp) })
		for len(set.jobs) > int(set.limit) {
			j := set.jobs[0]
			set.jobs = set.jobs[1:]
			err := c.client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			c.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %s", j.Name)
		}
	}
	return nil
}
