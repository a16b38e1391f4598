package apiserver

import (
	"fmt"
	"maps"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/robfig/cron/v3"

	"github.com/minicluster/minicluster/store"
)

// Jobs and CronJobs: defaults, validation and tables as kube-apiserver's batch/v1.

func batchResources() []*Resource {
	job := newResource[batchv1.Job]("batch", "v1", "Job", "jobs", true)
	job.Categories, job.Subresources = []string{"all"}, []string{"status"}
	job.defaults, job.validate, job.table, job.prepareUpdate = defaultJob, validateJob, jobTable, keepStatus
	cj := newResource[batchv1.CronJob]("batch", "v1", "CronJob", "cronjobs", true)
	cj.ShortNames, cj.Categories, cj.Subresources = []string{"cj"}, []string{"all"}, []string{"status"}
	cj.defaults, cj.validate, cj.table, cj.prepareUpdate = defaultCronJob, validateCronJob, cronJobTable, keepStatus
	return []*Resource{job, cj}
}

// defaultJob sets kube-apiserver's defaults, and the selector it generates from the
// job's uid unless spec.manualSelector.
func defaultJob(obj store.Object) {
	j := obj.(*batchv1.Job)
	defaultJobSpec(&j.Spec)
	if ptr.Deref(j.Spec.ManualSelector, false) || j.Spec.Selector != nil || j.UID == "" {
		return
	}
	uid := string(j.UID)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	maps.Copy(j.Spec.Template.Labels, map[string]string{batchv1.ControllerUidLabel: uid, batchv1.JobNameLabel: j.Name,
		"controller-uid": uid, "job-name": j.Name})
	j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
}

func defaultJobSpec(s *batchv1.JobSpec) {
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions, s.Parallelism = ptr.To[int32](1), ptr.To[int32](1)
	}
	if s.Parallelism == nil {
		s.Parallelism = ptr.To[int32](1)
	}
	if s.BackoffLimit == nil {
		s.BackoffLimit = ptr.To[int32](6)
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptr.To(false)
	}
	if s.ManualSelector == nil {
		s.ManualSelector = ptr.To(false)
	}
	if s.PodReplacementPolicy == nil {
		s.PodReplacementPolicy = ptr.To(batchv1.TerminatingOrFailed)
	}
	defaultPodSpec(&s.Template.Spec)
}

func validateJobSpec(s *batchv1.JobSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, v := range map[string]*int32{"parallelism": s.Parallelism, "completions": s.Completions, "backoffLimit": s.BackoffLimit} {
		if v != nil && *v < 0 {
			errs = append(errs, field.Invalid(p.Child(name), *v, "must be greater than or equal to 0"))
		}
	}
	if v := s.ActiveDeadlineSeconds; v != nil && *v <= 0 {
		errs = append(errs, field.Invalid(p.Child("activeDeadlineSeconds"), *v, "must be greater than 0"))
	}
	if v := s.TTLSecondsAfterFinished; v != nil && *v < 0 {
		errs = append(errs, field.Invalid(p.Child("ttlSecondsAfterFinished"), *v, "must be greater than or equal to 0"))
	}
	if m := s.CompletionMode; m != nil && *m != batchv1.NonIndexedCompletion && *m != batchv1.IndexedCompletion {
		errs = append(errs, field.NotSupported(p.Child("completionMode"), *m, []batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}))
	}
	if m := s.CompletionMode; m != nil && *m == batchv1.IndexedCompletion && s.Completions == nil {
		errs = append(errs, field.Required(p.Child("completions"), fmt.Sprintf("when completion mode is %s", *m)))
	}
	if pfp := s.PodFailurePolicy; pfp != nil {
		if rp := s.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever {
			errs = append(errs, field.Invalid(p.Child("template", "spec", "restartPolicy"), rp, `only "Never" is supported when podFailurePolicy is specified`))
		}
		actions := []batchv1.PodFailurePolicyAction{batchv1.PodFailurePolicyActionCount, batchv1.PodFailurePolicyActionFailIndex,
			batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionIgnore}
		for i, r := range pfp.Rules {
			rp := p.Child("podFailurePolicy", "rules").Index(i)
			if !slices.Contains(actions, r.Action) {
				errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, actions))
			}
			if (r.OnExitCodes == nil) == (len(r.OnPodConditions) == 0) {
				errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
			}
			if e := r.OnExitCodes; e != nil {
				if e.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn && e.Operator != batchv1.PodFailurePolicyOnExitCodesOpNotIn {
					errs = append(errs, field.NotSupported(rp.Child("onExitCodes", "operator"), e.Operator,
						[]batchv1.PodFailurePolicyOnExitCodesOperator{batchv1.PodFailurePolicyOnExitCodesOpIn, batchv1.PodFailurePolicyOnExitCodesOpNotIn}))
				}
				if len(e.Values) == 0 {
					errs = append(errs, field.Required(rp.Child("onExitCodes", "values"), "at least one value is required"))
				}
			}
		}
	}
	switch s.Template.Spec.RestartPolicy {
	case corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		errs = append(errs, field.NotSupported(p.Child("template", "spec", "restartPolicy"), s.Template.Spec.RestartPolicy,
			[]corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	}
	return append(errs, validatePodSpec(&s.Template.Spec, p.Child("template", "spec"))...)
}

func validateJob(obj, old store.Object) field.ErrorList {
	j := obj.(*batchv1.Job)
	errs := validateJobSpec(&j.Spec, specPath)
	if j.Spec.Selector == nil {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		errs = append(errs, validateSelectorMatches(j.Spec.Selector, j.Spec.Template.Labels)...)
	}
	if old != nil {
		o := old.(*batchv1.Job)
		if !apiequality.Semantic.DeepEqual(j.Spec.Selector, o.Spec.Selector) {
			errs = append(errs, field.Invalid(specPath.Child("selector"), j.Spec.Selector, "field is immutable"))
		}
		if !apiequality.Semantic.DeepEqual(j.Spec.Template, o.Spec.Template) {
			errs = append(errs, field.Invalid(specPath.Child("template"), "", "field is immutable"))
		}
		if !apiequality.Semantic.DeepEqual(j.Spec.Completions, o.Spec.Completions) {
			errs = append(errs, field.Invalid(specPath.Child("completions"), j.Spec.Completions, "field is immutable"))
		}
	}
	return errs
}

func validateSelectorMatches(sel *metav1.LabelSelector, lbls map[string]string) field.ErrorList {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return field.ErrorList{field.Invalid(specPath.Child("selector"), sel, err.Error())}
	}
	if s.Empty() || !s.Matches(labels.Set(lbls)) {
		return field.ErrorList{field.Invalid(specPath.Child("template", "metadata", "labels"), lbls, "`selector` does not match template `labels`")}
	}
	return nil
}

func defaultCronJob(obj store.Object) {
	c := obj.(*batchv1.CronJob)
	if c.Spec.ConcurrencyPolicy == "" {
		c.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if c.Spec.Suspend == nil {
		c.Spec.Suspend = ptr.To(false)
	}
	if c.Spec.SuccessfulJobsHistoryLimit == nil {
		c.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](3)
	}
	if c.Spec.FailedJobsHistoryLimit == nil {
		c.Spec.FailedJobsHistoryLimit = ptr.To[int32](1)
	}
	defaultJobSpec(&c.Spec.JobTemplate.Spec)
}

func validateCronJob(obj, _ store.Object) field.ErrorList {
	c := obj.(*batchv1.CronJob)
	var errs field.ErrorList
	if c.Spec.Schedule == "" {
		errs = append(errs, field.Required(specPath.Child("schedule"), ""))
	} else if _, err := cron.ParseStandard(c.Spec.Schedule); err != nil {
		errs = append(errs, field.Invalid(specPath.Child("schedule"), c.Spec.Schedule, err.Error()))
	}
	if tz := c.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			errs = append(errs, field.Invalid(specPath.Child("timeZone"), *tz, "unknown time zone "+*tz))
		}
	}
	switch c.Spec.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("concurrencyPolicy"), c.Spec.ConcurrencyPolicy,
			[]batchv1.ConcurrencyPolicy{batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent}))
	}
	if len(c.Name) > 52 {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), c.Name, "must be no more than 52 characters"))
	}
	return append(errs, validateJobSpec(&c.Spec.JobTemplate.Spec, specPath.Child("jobTemplate", "spec"))...)
}

// jobStatus is kubectl 1.32's STATUS column of a Job: the first of these that holds.
func jobStatus(j *batchv1.Job) string {
	has := func(t batchv1.JobConditionType) bool {
		for _, c := range j.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}
	switch {
	case has(batchv1.JobComplete):
		return "Complete"
	case has(batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case has(batchv1.JobSuspended):
		return "Suspended"
	case has(batchv1.JobFailureTarget):
		return "FailureTarget"
	case has(batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

var jobTable = append(tableDef{
	{name: "Status", typ: "string", cell: func(o store.Object) any { return jobStatus(o.(*batchv1.Job)) }},
	{name: "Completions", typ: "string", cell: func(o store.Object) any {
		j := o.(*batchv1.Job)
		if j.Spec.Completions != nil {
			return fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
		}
		p := ptr.Deref(j.Spec.Parallelism, 1)
		if p > 1 {
			return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, p)
		}
		return fmt.Sprintf("%d/1", j.Status.Succeeded)
	}},
	{name: "Duration", typ: "string", cell: func(o store.Object) any {
		j := o.(*batchv1.Job)
		switch {
		case j.Status.StartTime == nil:
			return ""
		case j.Status.CompletionTime == nil:
			return duration.HumanDuration(time.Since(j.Status.StartTime.Time))
		}
		return duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}},
}, workloadWide(
	func(o store.Object) *corev1.PodSpec { return &o.(*batchv1.Job).Spec.Template.Spec },
	func(o store.Object) *metav1.LabelSelector { return o.(*batchv1.Job).Spec.Selector })...)

var cronJobTable = append(tableDef{
	{name: "Schedule", typ: "string", cell: func(o store.Object) any { return o.(*batchv1.CronJob).Spec.Schedule }},
	{name: "Timezone", typ: "string", cell: func(o store.Object) any { return ptr.Deref(o.(*batchv1.CronJob).Spec.TimeZone, "<none>") }},
	{name: "Suspend", typ: "boolean", cell: func(o store.Object) any {
		return map[bool]string{true: "True", false: "False"}[ptr.Deref(o.(*batchv1.CronJob).Spec.Suspend, false)]
	}},
	{name: "Active", typ: "integer", cell: func(o store.Object) any { return int64(len(o.(*batchv1.CronJob).Status.Active)) }},
	{name: "Last Schedule", typ: "string", cell: func(o store.Object) any {
		if t := o.(*batchv1.CronJob).Status.LastScheduleTime; t != nil {
			return age(*t)
		}
		return "<none>"
	}},
}, workloadWide(
	func(o store.Object) *corev1.PodSpec { return &o.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template.Spec },
	func(o store.Object) *metav1.LabelSelector { return o.(*batchv1.CronJob).Spec.JobTemplate.Spec.Selector })...)

// ReplicationControllers: the ReplicaSets' predecessor, kept by the same controller.

func replicationControllerResource() *Resource {
	rc := newResource[corev1.ReplicationController]("", "v1", "ReplicationController", "replicationcontrollers", true)
	rc.ShortNames, rc.Categories, rc.Subresources = []string{"rc"}, []string{"all"}, []string{"status", "scale"}
	rc.defaults, rc.validate, rc.prepareUpdate = defaultReplicationController, validateReplicationController, keepStatus
	rc.table = append(tableDef{
		{name: "Desired", typ: "integer", cell: func(o store.Object) any { return int64(replicas(o.(*corev1.ReplicationController).Spec.Replicas)) }},
		{name: "Current", typ: "integer", cell: func(o store.Object) any { return int64(o.(*corev1.ReplicationController).Status.Replicas) }},
		{name: "Ready", typ: "integer", cell: func(o store.Object) any { return int64(o.(*corev1.ReplicationController).Status.ReadyReplicas) }},
	}, workloadWide(
		func(o store.Object) *corev1.PodSpec {
			if t := o.(*corev1.ReplicationController).Spec.Template; t != nil {
				return &t.Spec
			}
			return &corev1.PodSpec{}
		},
		func(o store.Object) *metav1.LabelSelector {
			return &metav1.LabelSelector{MatchLabels: o.(*corev1.ReplicationController).Spec.Selector}
		})...)
	return rc
}

func defaultReplicationController(obj store.Object) {
	rc := obj.(*corev1.ReplicationController)
	if rc.Spec.Replicas == nil {
		rc.Spec.Replicas = ptr.To[int32](1)
	}
	if t := rc.Spec.Template; t != nil {
		if len(rc.Spec.Selector) == 0 {
			rc.Spec.Selector = maps.Clone(t.Labels)
		}
		if len(rc.Labels) == 0 {
			rc.Labels = maps.Clone(t.Labels)
		}
		defaultPodSpec(&t.Spec)
	}
}

func validateReplicationController(obj, _ store.Object) field.ErrorList {
	rc := obj.(*corev1.ReplicationController)
	if rc.Spec.Template == nil {
		return field.ErrorList{field.Required(specPath.Child("template"), "")}
	}
	if len(rc.Spec.Selector) == 0 {
		return field.ErrorList{field.Required(specPath.Child("selector"), "")}
	}
	return validateWorkload(rc.Spec.Replicas, &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}, rc.Spec.Template)
}
