package controllers

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	synced cache.InformerSynced
	node   string
	rec    record.EventRecorder
	loop   *Loop
}

// NewScheduler builds the scheduler.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	inf := cfg.Informers.Core().V1().Pods()
	c := &Scheduler{client: cfg.Client, pods: inf.Lister(), synced: inf.Informer().HasSynced, node: cfg.NodeName, rec: cfg.Recorder}
	c.loop = NewLoop("scheduler", cfg.Log, c.reconcile)
	inf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{Handler: c.loop.Handler(),
		FilterFunc: func(obj any) bool {
			p, ok := obj.(*corev1.Pod)
			return ok && unscheduled(p)
		}})
	return c
}

func unscheduled(p *corev1.Pod) bool { return p.Spec.NodeName == "" && p.DeletionTimestamp == nil }

// Run binds pods until ctx is cancelled.
func (c *Scheduler) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.synced)
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
