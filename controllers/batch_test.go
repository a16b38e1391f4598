package controllers

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func job(name string, completions, parallelism, backoffLimit int32) *batchv1.Job {
	lbls := map[string]string{"batch.kubernetes.io/controller-uid": name}
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-" + k8stypes.UID(name)},
		Spec: batchv1.JobSpec{Completions: ptr.To(completions), Parallelism: ptr.To(parallelism), BackoffLimit: ptr.To(backoffLimit),
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
}

// finishPods ends every running pod of the world with phase.
func (w *world) finishPods(phase corev1.PodPhase, at time.Time) {
	for _, p := range w.pods() {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		p = p.DeepCopy()
		p.Status.Phase = phase
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: map[bool]int32{true: 0, false: 1}[phase == corev1.PodSucceeded], FinishedAt: metav1.NewTime(at)}}}}
		w.update(p)
	}
}

func jobConditions(j *batchv1.Job) []string {
	var out []string
	for _, c := range j.Status.Conditions {
		out = append(out, string(c.Type)+"="+string(c.Status)+"/"+c.Reason)
	}
	return out
}

// Completions run parallelism at a time; the job completes with Kubernetes' conditions
// and goes ttlSecondsAfterFinished later.
func TestJobRunsToCompletion(t *testing.T) {
	w := newWorld(t)
	c := NewJob(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	j := job("pi", 3, 2, 6)
	j.Spec.TTLSecondsAfterFinished = ptr.To[int32](30)
	w.apply(j)
	get := func() *batchv1.Job { return list[*batchv1.Job](w, "jobs")[0] }
	w.reconcile(c.reconcile, "default/pi")
	if n := len(w.pods()); n != 2 || get().Status.Active != 2 || get().Status.StartTime == nil {
		t.Fatalf("%d pods, status %+v", n, get().Status)
	}
	w.finishPods(corev1.PodSucceeded, now)
	w.reconcile(c.reconcile, "default/pi")
	if n := len(w.pods()); n != 3 || get().Status.Succeeded != 2 || get().Status.Active != 1 {
		t.Fatalf("after two succeed: %d pods, status %+v", n, get().Status)
	}
	w.finishPods(corev1.PodSucceeded, now)
	w.reconcile(c.reconcile, "default/pi")
	diff(t, "conditions", []string{"SuccessCriteriaMet=True/CompletionsReached", "Complete=True/CompletionsReached"}, jobConditions(get()))
	if st := get().Status; st.Succeeded != 3 || st.Active != 0 || st.CompletionTime == nil {
		t.Errorf("status %+v", st)
	}
	w.reconcile(c.reconcile, "default/pi")
	if get().DeletionTimestamp != nil {
		t.Fatal("deleted before its TTL")
	}
	now = now.Add(31 * time.Second)
	w.reconcile(c.reconcile, "default/pi")
	if jobs := list[*batchv1.Job](w, "jobs"); len(jobs) != 0 && jobs[0].DeletionTimestamp == nil {
		t.Errorf("not deleted after its TTL")
	}
}

// A failed pod is replaced after the back-off; past backoffLimit the job fails.
func TestJobBackoffLimit(t *testing.T) {
	w := newWorld(t)
	c := NewJob(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	w.apply(job("flaky", 1, 1, 1))
	get := func() *batchv1.Job { return list[*batchv1.Job](w, "jobs")[0] }
	w.reconcile(c.reconcile, "default/flaky")
	w.finishPods(corev1.PodFailed, now)
	w.reconcile(c.reconcile, "default/flaky")
	if n := len(w.pods()); n != 1 || get().Status.Failed != 1 {
		t.Fatalf("within the back-off: %d pods, status %+v", n, get().Status)
	}
	now = now.Add(11 * time.Second)
	w.reconcile(c.reconcile, "default/flaky")
	if n := len(w.pods()); n != 2 {
		t.Fatalf("after the back-off: %d pods", n)
	}
	w.finishPods(corev1.PodFailed, now)
	w.reconcile(c.reconcile, "default/flaky")
	diff(t, "conditions", []string{"FailureTarget=True/BackoffLimitExceeded", "Failed=True/BackoffLimitExceeded"}, jobConditions(get()))
}

// A CronJob makes one Job per scheduled time, named for it, and Forbid skips a time
// while one runs.
func TestCronJobSchedules(t *testing.T) {
	w := newWorld(t)
	c := NewCronJob(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	now := time.Date(2026, 12, 5, 10, 0, 30, 0, time.UTC)
	c.now = func() time.Time { return now }
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "tick", UID: "uid-tick", CreationTimestamp: metav1.NewTime(now)},
		Spec: batchv1.CronJobSpec{Schedule: "*/1 * * * *", TimeZone: ptr.To("UTC"), ConcurrencyPolicy: batchv1.ForbidConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{Spec: job("x", 1, 1, 6).Spec}}}
	cj.Spec.JobTemplate.Spec.Selector = nil
	w.apply(cj)
	jobNames := func() []string {
		var out []string
		for _, j := range list[*batchv1.Job](w, "jobs") {
			out = append(out, j.Name)
		}
		return out
	}
	w.reconcile(c.reconcile, "default/tick")
	diff(t, "jobs before the first time", []string(nil), jobNames())
	now = now.Add(35 * time.Second) // 10:01:05
	w.reconcile(c.reconcile, "default/tick")
	w.reconcile(c.reconcile, "default/tick")
	first := "tick-" + strconv.FormatInt(time.Date(2026, 12, 5, 10, 1, 0, 0, time.UTC).Unix()/60, 10)
	diff(t, "jobs at 10:01:05", []string{first}, jobNames())
	got := list[*batchv1.CronJob](w, "cronjobs")[0].Status
	if len(got.Active) != 1 || got.LastScheduleTime == nil || got.LastScheduleTime.Minute() != 1 {
		t.Errorf("status %+v", got)
	}
	now = now.Add(time.Minute) // 10:02:05, the first still running: Forbid
	w.reconcile(c.reconcile, "default/tick")
	diff(t, "jobs while one runs (Forbid)", []string{first}, jobNames())
}

// A DaemonSet puts one pod, pinned by affinity and tolerating a cordon, on each node
// that matches its node selector, and replaces it when the template changes.
func TestDaemonSetOnePodPerNode(t *testing.T) {
	w := newWorld(t)
	c := NewDaemonSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	w.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"disk": "ssd"}}, Spec: corev1.NodeSpec{Unschedulable: true}})
	w.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	lbls := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", UID: "uid-agent"}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: lbls},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"disk": "ssd"}, Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}}}}}}
	w.apply(ds)
	w.reconcile(c.reconcile, "default/agent")
	placed := func() map[string]string {
		out := map[string]string{}
		for _, p := range w.pods() {
			if p.DeletionTimestamp == nil {
				out[podNode(p)] = p.Spec.Containers[0].Image
			}
		}
		return out
	}
	diff(t, "pods by node", map[string]string{"n1": "busybox:1"}, placed())
	w.reconcile(c.reconcile, "default/agent")
	if n := len(w.pods()); n != 1 {
		t.Errorf("%d pods after a second pass", n)
	}
	ds = list[*appsv1.DaemonSet](w, "daemonsets")[0].DeepCopy()
	ds.Spec.Template.Spec.Containers[0].Image = "busybox:2"
	ds.Generation++
	w.update(ds)
	w.reconcile(c.reconcile, "default/agent") // the old pod goes
	w.reconcile(c.reconcile, "default/agent") // the new one comes
	diff(t, "pods by node after the update", map[string]string{"n1": "busybox:2"}, placed())
}

// A StatefulSet makes its pods one by one, each once the one before is ready, and a
// RollingUpdate with a partition replaces only the ordinals at or above it, highest
// first.
func TestStatefulSetOrderAndPartition(t *testing.T) {
	w := newWorld(t)
	c := NewStatefulSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	lbls := map[string]string{"app": "db"}
	w.apply(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", UID: "uid-db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](3), ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: lbls},
		UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](1)}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "db:1"}}}}}})
	images := func() map[string]string {
		out := map[string]string{}
		for _, p := range w.pods() {
			if p.DeletionTimestamp == nil {
				out[p.Name] = p.Spec.Containers[0].Image
			}
		}
		return out
	}
	w.reconcile(c.reconcile, "default/db")
	diff(t, "first pass", map[string]string{"db-0": "db:1"}, images())
	if p := w.pods()[0]; p.Spec.Hostname != "db-0" || p.Spec.Subdomain != "db" {
		t.Errorf("hostname %q subdomain %q", p.Spec.Hostname, p.Spec.Subdomain)
	}
	w.reconcile(c.reconcile, "default/db")
	diff(t, "while db-0 is not ready", map[string]string{"db-0": "db:1"}, images())
	for range 3 {
		w.kubelet(nil)
		w.reconcile(c.reconcile, "default/db")
	}
	diff(t, "all ready", map[string]string{"db-0": "db:1", "db-1": "db:1", "db-2": "db:1"}, images())
	set := list[*appsv1.StatefulSet](w, "statefulsets")[0].DeepCopy()
	set.Spec.Template.Spec.Containers[0].Image = "db:2"
	set.Generation++
	w.update(set)
	for range 6 {
		w.reconcile(c.reconcile, "default/db")
		w.kubelet(nil)
	}
	diff(t, "after the update with partition 1", map[string]string{"db-0": "db:1", "db-1": "db:2", "db-2": "db:2"}, images())
	st := list[*appsv1.StatefulSet](w, "statefulsets")[0].Status
	if st.UpdatedReplicas != 2 || st.CurrentRevision == st.UpdateRevision || st.ReadyReplicas != 3 {
		t.Errorf("status %+v", st)
	}
}

// A canary and a phased roll-out, as the e2e "should perform canary updates and phased
// rolling updates of template modifications": a partition at or above the replicas
// updates nothing, lowering it updates the ordinals from it up, and a pod deleted below
// the partition comes back at the current revision, not the update one.
func TestStatefulSetCanaryAndPhasedRollingUpdate(t *testing.T) {
	w := newWorld(t)
	c := NewStatefulSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	lbls := map[string]string{"app": "web"}
	w.apply(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "uid-web"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](3), ServiceName: "web", Selector: &metav1.LabelSelector{MatchLabels: lbls},
		UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](3)}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "httpd:1"}}}}}})
	get := func() *appsv1.StatefulSet { return list[*appsv1.StatefulSet](w, "statefulsets")[0] }
	settle := func() {
		for range 10 {
			w.reconcile(c.reconcile, "default/web")
			w.kubelet(nil)
		}
		w.reconcile(c.reconcile, "default/web")
	}
	edit := func(f func(*appsv1.StatefulSet)) {
		set := get().DeepCopy()
		f(set)
		set.Generation++
		w.update(set)
	}
	partition := func(p int32) func() {
		return func() {
			edit(func(set *appsv1.StatefulSet) { set.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p) })
		}
	}
	settle()
	old := get().Status.CurrentRevision
	edit(func(set *appsv1.StatefulSet) { set.Spec.Template.Spec.Containers[0].Image = "httpd:2" })
	settle()
	next := get().Status.UpdateRevision
	if old == "" || next == old {
		t.Fatalf("revisions %q before the update, %q after", old, next)
	}
	// state is each pod's image and revision, and the set's status, naming the
	// revisions "old" and "new".
	state := func() map[string]string {
		name := map[string]string{old: "old", next: "new"}
		st := get().Status
		out := map[string]string{"status": fmt.Sprintf("current=%s update=%s currentReplicas=%d updatedReplicas=%d",
			name[st.CurrentRevision], name[st.UpdateRevision], st.CurrentReplicas, st.UpdatedReplicas)}
		for _, p := range w.pods() {
			out[p.Name] = p.Spec.Containers[0].Image + " " + cmp.Or(name[p.Labels[appsv1.StatefulSetRevisionLabel]], p.Labels[appsv1.StatefulSetRevisionLabel])
		}
		return out
	}
	deletePods := func(names ...string) func() {
		return func() {
			for _, n := range names {
				if err := w.client.CoreV1().Pods("default").Delete(w.ctx, n, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, step := range []struct {
		name string
		do   func() // nil: nothing more is done
		want map[string]string
	}{
		{name: "partition 3 updates nothing", want: map[string]string{
			"status": "current=old update=new currentReplicas=3 updatedReplicas=0",
			"web-0":  "httpd:1 old", "web-1": "httpd:1 old", "web-2": "httpd:1 old"}},
		{name: "canary at partition 2", do: partition(2), want: map[string]string{
			"status": "current=old update=new currentReplicas=2 updatedReplicas=1",
			"web-0":  "httpd:1 old", "web-1": "httpd:1 old", "web-2": "httpd:2 new"}},
		{name: "deleted pods come back at their revision", do: deletePods("web-0", "web-2"), want: map[string]string{
			"status": "current=old update=new currentReplicas=2 updatedReplicas=1",
			"web-0":  "httpd:1 old", "web-1": "httpd:1 old", "web-2": "httpd:2 new"}},
		{name: "partition 1", do: partition(1), want: map[string]string{
			"status": "current=old update=new currentReplicas=1 updatedReplicas=2",
			"web-0":  "httpd:1 old", "web-1": "httpd:2 new", "web-2": "httpd:2 new"}},
		{name: "partition 0 completes the update", do: partition(0), want: map[string]string{
			"status": "current=new update=new currentReplicas=3 updatedReplicas=3",
			"web-0":  "httpd:2 new", "web-1": "httpd:2 new", "web-2": "httpd:2 new"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.do != nil {
				step.do()
			}
			settle()
			diff(t, "pods and status", step.want, state())
		})
	}
}

// OrderedReady scale-down halts while a pod is unhealthy (as the e2e "Scaling should
// happen in predictable order and halt if any stateful pod is unhealthy"), and then goes
// from the highest ordinal down.
func TestStatefulSetScaleDownHaltsOnUnhealthy(t *testing.T) {
	w := newWorld(t)
	c := NewStatefulSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	lbls := map[string]string{"app": "db"}
	w.apply(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", UID: "uid-db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](3), ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: lbls},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "db:1"}}}}}})
	for range 4 {
		w.reconcile(c.reconcile, "default/db")
		w.kubelet(nil)
	}
	if n := len(w.pods()); n != 3 {
		t.Fatalf("%d pods, want 3", n)
	}
	for _, p := range w.pods() { // the readiness probe fails everywhere
		p = p.DeepCopy()
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		w.update(p)
	}
	set := list[*appsv1.StatefulSet](w, "statefulsets")[0].DeepCopy()
	set.Spec.Replicas = ptr.To[int32](0)
	set.Generation++
	w.update(set)
	for range 5 {
		w.reconcile(c.reconcile, "default/db")
	}
	if n := len(w.pods()); n != 3 {
		t.Fatalf("scaled down to %d with every pod unready, want 3 kept", n)
	}
	w.kubelet(nil) // ready again
	var names []string
	for range 5 {
		before := map[string]bool{}
		for _, p := range w.pods() {
			before[p.Name] = true
		}
		w.reconcile(c.reconcile, "default/db")
		for _, p := range w.pods() {
			delete(before, p.Name)
		}
		for n := range before {
			names = append(names, n)
		}
	}
	diff(t, "deleted in order", []string{"db-2", "db-1", "db-0"}, names)
}

// An Indexed job gives each pod its index and completes when every index succeeded;
// a failed index is run again, not another.
func TestIndexedJob(t *testing.T) {
	w := newWorld(t)
	c := NewJob(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	j := job("idx", 3, 3, 6)
	j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	w.apply(j)
	get := func() *batchv1.Job { return list[*batchv1.Job](w, "jobs")[0] }
	w.reconcile(c.reconcile, "default/idx")
	indexes := map[string]bool{}
	for _, p := range w.pods() {
		i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		indexes[i] = true
		if p.Spec.Hostname != "idx-"+i || p.Labels[batchv1.JobCompletionIndexAnnotation] != i {
			t.Errorf("pod %s: hostname %q, labels %v", p.GenerateName, p.Spec.Hostname, p.Labels)
		}
		if env := p.Spec.Containers[0].Env; len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" {
			t.Errorf("env %+v", env)
		}
	}
	if len(indexes) != 3 || !indexes["0"] || !indexes["2"] {
		t.Fatalf("indexes %v", indexes)
	}
	// Index 1 fails, the others succeed: only index 1 runs again.
	for _, p := range w.pods() {
		p = p.DeepCopy()
		p.Status.Phase = map[bool]corev1.PodPhase{true: corev1.PodFailed, false: corev1.PodSucceeded}[p.Annotations[batchv1.JobCompletionIndexAnnotation] == "1"]
		w.update(p)
	}
	now = now.Add(time.Minute) // past the back-off
	w.reconcile(c.reconcile, "default/idx")
	if st := get().Status; st.CompletedIndexes != "0,2" || st.Active != 1 {
		t.Fatalf("status %+v", st)
	}
	for _, p := range w.pods() {
		if p.Status.Phase == "" && p.Annotations[batchv1.JobCompletionIndexAnnotation] != "1" {
			t.Errorf("a new pod for index %s", p.Annotations[batchv1.JobCompletionIndexAnnotation])
		}
	}
	w.finishPods(corev1.PodSucceeded, now)
	w.reconcile(c.reconcile, "default/idx")
	if st := get().Status; st.CompletedIndexes != "0-2" || finishedCondition(get()) == nil || finishedCondition(get()).Type != batchv1.JobComplete {
		t.Errorf("status %+v", st)
	}
}

// The pod failure policy: an ignored exit code does not count against backoffLimit,
// a FailJob one fails the job at once, with the rule in the message.
func TestJobPodFailurePolicy(t *testing.T) {
	w := newWorld(t)
	c := NewJob(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	j := job("pfp", 1, 1, 0)
	j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}},
		{Action: batchv1.PodFailurePolicyActionIgnore, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1}}},
	}}
	w.apply(j)
	get := func() *batchv1.Job { return list[*batchv1.Job](w, "jobs")[0] }
	w.reconcile(c.reconcile, "default/pfp")
	w.finishPods(corev1.PodFailed, now) // exit code 1: ignored
	w.reconcile(c.reconcile, "default/pfp")
	if st := get().Status; st.Failed != 0 || finishedCondition(get()) != nil || st.Active != 1 {
		t.Fatalf("after an ignored failure: %+v", st)
	}
	for _, p := range w.pods() {
		if p.Status.Phase == "" {
			p = p.DeepCopy()
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 42}}}}
			w.update(p)
		}
	}
	w.reconcile(c.reconcile, "default/pfp")
	done := finishedCondition(get())
	if done == nil || done.Type != batchv1.JobFailed || done.Reason != batchv1.JobReasonPodFailurePolicy ||
		!strings.Contains(done.Message, "failed with exit code 42 matching FailJob rule at index 0") {
		t.Errorf("condition %+v", done)
	}
}
