package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// NamespaceConfig configures the namespace lifecycle controller.
type NamespaceConfig struct {
	Client kubernetes.Interface
	// Dynamic lists and deletes objects of every namespaced kind discovery names.
	Dynamic   dynamic.Interface
	Informers informers.SharedInformerFactory
	Log       *slog.Logger
}

// Namespace empties a namespace marked for deletion and then removes it by clearing
// its "kubernetes" finalizer, as kube-controller-manager's namespace controller does.
type Namespace struct {
	client     kubernetes.Interface
	dynamic    dynamic.Interface
	namespaces corelisters.NamespaceLister
	synced     cache.InformerSynced
	loop       *Loop
}

// NewNamespace builds the controller.
func NewNamespace(cfg NamespaceConfig) *Namespace {
	inf := cfg.Informers.Core().V1().Namespaces()
	c := &Namespace{client: cfg.Client, dynamic: cfg.Dynamic, namespaces: inf.Lister(), synced: inf.Informer().HasSynced}
	c.loop = NewLoop("namespace", cfg.Log, c.reconcile)
	inf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{Handler: c.loop.Handler(),
		FilterFunc: func(obj any) bool {
			ns, ok := obj.(*corev1.Namespace)
			return ok && ns.DeletionTimestamp != nil
		}})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Namespace) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced)
	return nil
}

// reconcile deletes everything in a terminating namespace, then finalizes it.
func (c *Namespace) reconcile(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil {
		return nil
	}
	remaining, err := c.deleteContent(ctx, name)
	if err != nil {
		return err
	}
	if remaining > 0 {
		return fmt.Errorf("namespace %s: %d objects left: %w", name, remaining, ErrRequeue)
	}
	ns = ns.DeepCopy()
	ns.Spec.Finalizers = slices.DeleteFunc(ns.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
	_, err = c.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteContent deletes every namespaced object in ns and counts those it found: the
// namespace is finalized by a pass that finds nothing left.
func (c *Namespace) deleteContent(ctx context.Context, ns string) (int, error) {
	resources, err := namespacedResources(c.client.Discovery())
	if err != nil {
		return 0, err
	}
	found := 0
	background := metav1.DeletePropagationBackground
	for _, gvr := range resources {
		client := c.dynamic.Resource(gvr).Namespace(ns)
		list, err := client.List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", gvr.Resource, err)
		}
		for _, o := range list.Items {
			found++
			err := client.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
			if err != nil && !apierrors.IsNotFound(err) {
				return 0, err
			}
		}
	}
	return found, nil
}

// namespacedResources are the namespaced kinds that can be listed and deleted.
func namespacedResources(d discovery.DiscoveryInterface) ([]schema.GroupVersionResource, error) {
	lists, err := discovery.ServerPreferredNamespacedResources(d)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"list", "delete"}}, lists)
	set, err := discovery.GroupVersionResources(lists)
	if err != nil {
		return nil, err
	}
	var out []schema.GroupVersionResource
	for gvr := range set {
		out = append(out, gvr)
	}
	return out, nil
}
