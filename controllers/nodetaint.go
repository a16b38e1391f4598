package controllers

import (
	"context"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// NodeTaintConfig configures the node taint controller.
type NodeTaintConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Log       *slog.Logger
}

// NodeTaints keeps the node.kubernetes.io/unschedulable:NoSchedule taint on exactly the
// cordoned nodes (spec.unschedulable), as kube-controller-manager's node lifecycle
// controller does; DaemonSet pods tolerate it, other pods wait.
type NodeTaints struct {
	client kubernetes.Interface
	nodes  corelisters.NodeLister
	synced cache.InformerSynced
	loop   *Loop
}

// NewNodeTaints builds the controller.
func NewNodeTaints(cfg NodeTaintConfig) *NodeTaints {
	inf := cfg.Informers.Core().V1().Nodes()
	c := &NodeTaints{client: cfg.Client, nodes: inf.Lister(), synced: inf.Informer().HasSynced}
	c.loop = NewLoop("nodetaint", cfg.Log, c.reconcile)
	inf.Informer().AddEventHandler(c.loop.Handler())
	return c
}

// Run reconciles until ctx is cancelled.
func (c *NodeTaints) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced)
	return nil
}

var unschedulableTaint = corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}

func (c *NodeTaints) reconcile(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	isTaint := func(t corev1.Taint) bool {
		return t.Key == unschedulableTaint.Key && t.Effect == unschedulableTaint.Effect
	}
	if slices.ContainsFunc(node.Spec.Taints, isTaint) == node.Spec.Unschedulable {
		return nil
	}
	node = node.DeepCopy()
	if node.Spec.Unschedulable {
		now := metav1.Now()
		t := unschedulableTaint
		t.TimeAdded = &now
		node.Spec.Taints = append(node.Spec.Taints, t)
	} else {
		node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, isTaint)
	}
	_, err = c.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // changed meanwhile: the change brings it back
	}
	return err
}
