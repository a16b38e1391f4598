package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// SchedulerConfig configures the scheduler.
type SchedulerConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// NodeName is the node every pod is bound to: the cluster has one.
	NodeName string
	// Recorder receives Scheduled events (nil: none).
	Recorder record.EventRecorder
	Log      *slog.Logger
}

// Scheduler binds every unscheduled pod to the node through pods/binding, as
// kube-scheduler does (with one node there is nothing to choose).
type Scheduler struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	node   string
	rec    record.EventRecorder
	loop   *Loop
}

// NewScheduler builds the scheduler.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	inf, nodes := cfg.Informers.Core().V1().Pods(), cfg.Informers.Core().V1().Nodes()
	c := &Scheduler{client: cfg.Client, pods: inf.Lister(), nodes: nodes.Lister(), node: cfg.NodeName, rec: cfg.Recorder,
		synced: []cache.InformerSynced{inf.Informer().HasSynced, nodes.Informer().HasSynced}}
	c.loop = NewLoop("scheduler", cfg.Log, c.reconcile)
	inf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{Handler: c.loop.Handler(),
		FilterFunc: func(obj any) bool {
			p, ok := obj.(*corev1.Pod)
			return ok && unscheduled(p)
		}})
	// A node that changes (uncordoned, untainted) may now take the pods waiting for it.
	nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.retryWaiting() },
		UpdateFunc: func(old, cur any) {
			// Status heartbeats change nothing a pod is scheduled by.
			if o, n := old.(*corev1.Node), cur.(*corev1.Node); !apiequality.Semantic.DeepEqual(o.Spec, n.Spec) {
				c.retryWaiting()
			}
		},
	})
	return c
}

func (c *Scheduler) retryWaiting() {
	pods, _ := c.pods.List(labels.Everything())
	for _, p := range pods {
		if unscheduled(p) {
			c.loop.EnqueueObject(p)
		}
	}
}

// unfit says why the pod cannot go to node, as kube-scheduler's NodeUnschedulable and
// TaintToleration plugins would; "" when it fits.
func unfit(pod *corev1.Pod, node *corev1.Node) string {
	tolerates := func(taint *corev1.Taint) bool {
		for i := range pod.Spec.Tolerations {
			if pod.Spec.Tolerations[i].ToleratesTaint(logr.Discard(), taint, false) {
				return true
			}
		}
		return false
	}
	if node.Spec.Unschedulable && !tolerates(&corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return "1 node(s) were unschedulable"
	}
	for i, t := range node.Spec.Taints {
		if (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) && !tolerates(&node.Spec.Taints[i]) {
			return fmt.Sprintf("1 node(s) had untolerated taint {%s: %s}", t.Key, t.Value)
		}
	}
	return ""
}

func unscheduled(p *corev1.Pod) bool { return p.Spec.NodeName == "" && p.DeletionTimestamp == nil }

// Run binds pods until ctx is cancelled.
func (c *Scheduler) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.synced...)
	return nil
}

func (c *Scheduler) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && !unscheduled(pod)) {
		return nil
	}
	if err != nil {
		return err
	}
	if node, err := c.nodes.Get(c.node); err == nil {
		if why := unfit(pod, node); why != "" {
			return c.markUnschedulable(ctx, pod, why)
		}
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: pod.UID},
		Target: corev1.ObjectReference{Kind: "Node", Name: c.node}}
	err = c.client.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, replaced, or bound already
	}
	if err == nil {
		c.rec.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", ns, name, c.node)
	}
	return err
}

// markUnschedulable records why the pod waits, as kube-scheduler does: a PodScheduled
// condition False/Unschedulable and a FailedScheduling event. The pod is tried again
// when the node changes.
func (c *Scheduler) markUnschedulable(ctx context.Context, pod *corev1.Pod, why string) error {
	msg := fmt.Sprintf("0/1 nodes are available: %s. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.", why)
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Message == msg {
			return nil
		}
	}
	c.rec.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	pod = pod.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: msg, LastTransitionTime: metav1.Now()}
	pod.Status.Conditions = append(slices.DeleteFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled }), cond)
	_, err := c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or changed: the change brings it back
	}
	return err
}
