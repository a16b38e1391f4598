package controllers

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// DaemonSet runs one pod of a DaemonSet's template on every node it fits (node
// selector, taints against the pod's tolerations plus those Kubernetes adds to daemon
// pods), replaces pods of an old template (RollingUpdate) and failed ones, as
// kube-controller-manager's daemon set controller does. Its templates are kept as
// ControllerRevisions (daemonset_history.go).
type DaemonSet struct {
	client  kubernetes.Interface
	sets    appslisters.DaemonSetLister
	history revisionHistory
	nodes   corelisters.NodeLister
	pc      *podControl
	synced  []cache.InformerSynced
	loop    *Loop
	now     func() time.Time
	rec     record.EventRecorder
}

var dsKind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// revisionHashLabel names a daemon pod's template, as the ControllerRevision's hash.
const revisionHashLabel = appsv1.DefaultDaemonSetUniqueLabelKey // controller-revision-hash

// NewDaemonSet builds the controller.
func NewDaemonSet(cfg WorkloadConfig) *DaemonSet {
	cfg.defaults()
	dsInf, nodeInf, podInf := cfg.Informers.Apps().V1().DaemonSets(), cfg.Informers.Core().V1().Nodes(), cfg.Informers.Core().V1().Pods()
	revInf := cfg.Informers.Apps().V1().ControllerRevisions()
	c := &DaemonSet{client: cfg.Client, sets: dsInf.Lister(), nodes: nodeInf.Lister(), pc: newPodControl(cfg.Client, podInf.Lister(), cfg.Recorder, dsKind),
		history: revisionHistory{client: cfg.Client, revs: revInf.Lister()}, now: time.Now, rec: cfg.Recorder,
		synced: []cache.InformerSynced{dsInf.Informer().HasSynced, nodeInf.Informer().HasSynced, podInf.Informer().HasSynced, revInf.Informer().HasSynced}}
	c.loop = NewLoop("daemonset", cfg.Log, c.reconcile)
	dsInf.Informer().AddEventHandler(c.loop.Handler())
	podInf.Informer().AddEventHandler(c.pc.expect.handler())
	podInf.Informer().AddEventHandler(ownerHandler(c.loop, "DaemonSet"))
	revInf.Informer().AddEventHandler(c.revisionHandler())
	all := func(any) {
		sets, _ := c.sets.List(labels.Everything())
		for _, ds := range sets {
			c.loop.EnqueueObject(ds)
		}
	}
	// Where daemons run depends on a node's labels and spec, not on its status heartbeats.
	nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all, DeleteFunc: all, UpdateFunc: func(old, cur any) {
		o, n := old.(*corev1.Node), cur.(*corev1.Node)
		if !maps.Equal(o.Labels, n.Labels) || !apiequality.Semantic.DeepEqual(o.Spec, n.Spec) {
			all(n)
		}
	}})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *DaemonSet) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

// daemonTolerations are what Kubernetes adds to every daemon pod: it stays through node
// trouble and lands on cordoned nodes.
var daemonTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// daemonPod is the pod ds runs on node, labelled with its current revision's hash.
func daemonPod(ds *appsv1.DaemonSet, node, hash string) *corev1.Pod {
	t := ds.Spec.Template.DeepCopy()
	lbls := maps.Clone(t.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[revisionHashLabel] = hash
	if g := templateGeneration(ds); g != "" {
		lbls[templateGenerationLabel] = g
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: ds.Name + "-", Labels: lbls, Annotations: t.Annotations,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, dsKind)}}, Spec: t.Spec}
	for _, tol := range daemonTolerations {
		have := false
		for _, t := range pod.Spec.Tolerations {
			have = have || (t.Key == tol.Key && t.Effect == tol.Effect)
		}
		if !have {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, tol)
		}
	}
	// Kubernetes pins a daemon pod to its node by affinity on the node's name.
	pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{
			{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}}}
	return pod
}

// fits says whether ds's pods belong on node.
func (c *DaemonSet) fits(ds *appsv1.DaemonSet, node *corev1.Node) bool {
	if !labels.SelectorFromSet(ds.Spec.Template.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	return unfit(daemonPod(ds, node.Name, ""), node) == ""
}

// podNode is the node a daemon pod is on, or pinned to.
func podNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range t.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return ""
}

func (c *DaemonSet) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	ds, err := c.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.pc.expect.forget(key)
		return nil
	}
	if err != nil || ds.DeletionTimestamp != nil {
		return err
	}
	owned, synced, err := c.pc.claim(ctx, key, ds, ds.Spec.Selector)
	if err != nil || !synced {
		return cmp.Or(err, ErrRequeue)
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	cur, old, collisions, err := c.constructHistory(ctx, ds, owned)
	if err != nil {
		return fmt.Errorf("construct the history of %s: %w", key, err)
	}
	hash, generation := cur.Labels[revisionHashLabel], templateGeneration(ds)
	byNode := map[string][]*corev1.Pod{}
	for _, p := range owned {
		if p.DeletionTimestamp == nil {
			byNode[podNode(p)] = append(byNode[podNode(p)], p)
		}
	}
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, CollisionCount: ds.Status.CollisionCount, Conditions: ds.Status.Conditions}
	if collisions > 0 {
		st.CollisionCount = ptr.To(collisions)
	}
	rolling := ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType
	var requeue bool
	seen := map[string]bool{}
	for _, node := range nodes {
		seen[node.Name] = true
		pods := byNode[node.Name]
		if !c.fits(ds, node) {
			st.NumberMisscheduled += int32(min(len(pods), 1))
			for _, p := range pods {
				if err := c.pc.delete(ctx, key, ds, p); err != nil {
					return err
				}
			}
			continue
		}
		st.DesiredNumberScheduled++
		var keep *corev1.Pod
		for _, p := range pods {
			switch {
			case p.Status.Phase == corev1.PodFailed:
				c.rec.Eventf(ds, corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, node.Name)
			case keep == nil && !(rolling && !podUpdated(p, hash, generation)):
				keep = p
				continue
			case keep == nil && rolling:
				// The old template's pod goes first (maxUnavailable 1 on one node).
			}
			if err := c.pc.delete(ctx, key, ds, p); err != nil {
				return err
			}
			requeue = true
		}
		if keep == nil {
			if len(pods) == 0 || !requeue {
				if err := c.pc.create(ctx, key, ds, daemonPod(ds, node.Name, hash)); err != nil {
					return err
				}
			}
			continue
		}
		st.CurrentNumberScheduled++
		if podUpdated(keep, hash, generation) {
			st.UpdatedNumberScheduled++
		}
		if podReady(keep) {
			st.NumberReady++
			if podAvailable(keep, ds.Spec.MinReadySeconds, c.now()) {
				st.NumberAvailable++
			}
		}
	}
	for node, pods := range byNode {
		if !seen[node] && node != "" {
			for _, p := range pods {
				if err := c.pc.delete(ctx, key, ds, p); err != nil {
					return err
				}
			}
		}
	}
	if err := c.cleanupHistory(ctx, ds, owned, old); err != nil {
		return err
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	if !apiequality.Semantic.DeepEqual(st, ds.Status) {
		next := ds.DeepCopy()
		next.Status = st
		_, err := c.client.AppsV1().DaemonSets(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
	}
	if requeue {
		return ErrRequeue
	}
	return nil
}
