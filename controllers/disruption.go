package controllers

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// DisruptionConfig configures the disruption controller.
type DisruptionConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Log       *slog.Logger
}

// Disruption keeps each PodDisruptionBudget's status — expected and healthy pods, and
// how many may be disrupted now — which the eviction API consults, as
// kube-controller-manager's disruption controller does.
type Disruption struct {
	client kubernetes.Interface
	pdbs   policylisters.PodDisruptionBudgetLister
	pods   corelisters.PodLister
	sets   appslisters.ReplicaSetLister
	synced []cache.InformerSynced
	loop   *Loop
	now    func() time.Time
}

// NewDisruption builds the controller.
func NewDisruption(cfg DisruptionConfig) *Disruption {
	pdbInf, podInf, rsInf := cfg.Informers.Policy().V1().PodDisruptionBudgets(), cfg.Informers.Core().V1().Pods(), cfg.Informers.Apps().V1().ReplicaSets()
	c := &Disruption{client: cfg.Client, pdbs: pdbInf.Lister(), pods: podInf.Lister(), sets: rsInf.Lister(), now: time.Now,
		synced: []cache.InformerSynced{pdbInf.Informer().HasSynced, podInf.Informer().HasSynced, rsInf.Informer().HasSynced}}
	c.loop = NewLoop("disruption", cfg.Log, c.reconcile)
	pdbInf.Informer().AddEventHandler(c.loop.Handler())
	// A pod's change concerns the budgets of its namespace that select it.
	enqueuePod := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		budgets, _ := c.pdbs.PodDisruptionBudgets(pod.Namespace).List(labels.Everything())
		for _, b := range budgets {
			if sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector); err == nil && sel.Matches(labels.Set(pod.Labels)) {
				c.loop.EnqueueObject(b)
			}
		}
	}
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueuePod, DeleteFunc: enqueuePod,
		UpdateFunc: func(_, obj any) { enqueuePod(obj) }})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Disruption) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

func (c *Disruption) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return nil
	}
	pods, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return err
	}
	now := c.now()
	st := policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, Conditions: pdb.Status.Conditions}
	// Pods evicted a moment ago but not yet going count as disrupted for 2 minutes.
	present := map[string]*corev1.Pod{}
	for _, p := range pods {
		present[p.Name] = p
	}
	for pod, at := range pdb.Status.DisruptedPods {
		if p := present[pod]; p != nil && p.DeletionTimestamp == nil && now.Sub(at.Time) < 2*time.Minute {
			if st.DisruptedPods == nil {
				st.DisruptedPods = map[string]metav1.Time{}
			}
			st.DisruptedPods[pod] = at
		}
	}
	var requeue time.Duration
	for _, p := range pods {
		if p.DeletionTimestamp == nil && podReady(p) {
			if _, disrupted := st.DisruptedPods[p.Name]; !disrupted {
				st.CurrentHealthy++
			}
		}
	}
	if len(st.DisruptedPods) > 0 {
		requeue = 2 * time.Minute
	}
	st.ExpectedPods = c.expected(pdb, pods)
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		n, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(st.ExpectedPods), true)
		st.DesiredHealthy = max(0, st.ExpectedPods-int32(n))
	case pdb.Spec.MinAvailable != nil:
		n, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(st.ExpectedPods), true)
		st.DesiredHealthy = int32(n)
	}
	st.DisruptionsAllowed = max(0, st.CurrentHealthy-st.DesiredHealthy)
	cond := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionTrue, Reason: policyv1.SufficientPodsReason,
		ObservedGeneration: pdb.Generation}
	if st.DisruptionsAllowed == 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, policyv1.InsufficientPodsReason
	}
	st.Conditions = append([]metav1.Condition(nil), pdb.Status.Conditions...)
	meta.SetStatusCondition(&st.Conditions, cond)
	if !apiequality.Semantic.DeepEqual(st, pdb.Status) {
		next := pdb.DeepCopy()
		next.Status = st
		_, err := c.client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if requeue > 0 {
		c.loop.EnqueueAfter(key, requeue)
	}
	return nil
}

// expected is how many pods the budget covers: the pods themselves for an integer
// minAvailable, else the replicas their controllers want (ReplicaSets; other pods
// count as themselves).
func (c *Disruption) expected(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod) int32 {
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int {
		return int32(len(pods))
	}
	var n int32
	seen := map[string]bool{}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.Kind != "ReplicaSet" {
			n++
			continue
		}
		if seen[ref.Name] {
			continue
		}
		seen[ref.Name] = true
		if rs, err := c.sets.ReplicaSets(p.Namespace).Get(ref.Name); err == nil {
			n += ptr.Deref(rs.Spec.Replicas, 1)
		}
	}
	return n
}
