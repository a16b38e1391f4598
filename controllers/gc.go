package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// GCConfig configures the garbage collector.
type GCConfig struct {
	// Discovery names the kinds to collect.
	Discovery discovery.DiscoveryInterface
	// Dynamic deletes and updates objects of any kind.
	Dynamic dynamic.Interface
	// Informers gives a shared informer for every kind; the collector starts those it
	// adds.
	Informers informers.SharedInformerFactory
	Log       *slog.Logger
}

// GarbageCollector deletes objects whose owners are gone and carries out the
// Foreground and Orphan propagation policies, as Kubernetes' garbage collector does.
// It works level-triggered on the whole graph: every change schedules one scan (changes
// arriving together share it), so a missed event is repaired by the next.
type GarbageCollector struct {
	cfg  GCConfig
	loop *Loop
	// Filled by Run from discovery.
	kinds map[schema.GroupKind]gcKind
	infs  []gcInformer
}

type gcKind struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

type gcInformer struct {
	kind gcKind
	inf  cache.SharedIndexInformer
}

const gcKey = "graph"

// gcDelay lets a burst of changes share one scan.
var gcDelay = 100 * time.Millisecond

// NewGarbageCollector builds the collector.
func NewGarbageCollector(cfg GCConfig) *GarbageCollector {
	c := &GarbageCollector{cfg: cfg, kinds: map[schema.GroupKind]gcKind{}}
	c.loop = NewLoop("garbagecollector", cfg.Log, func(ctx context.Context, _ string) error { return c.scan(ctx) })
	return c
}

// Run finds the kinds to watch, then collects until ctx is cancelled.
func (c *GarbageCollector) Run(ctx context.Context) error {
	// Discovery fails only while the API is unwell: try again rather than stop the daemon.
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		if err := c.discover(); err != nil {
			c.loop.log.Warn("garbage collector: discovery failed; retrying", "err", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil // cancelled
	}
	c.cfg.Informers.Start(ctx.Done()) // the informers added for kinds no one else watches
	synced := make([]cache.InformerSynced, len(c.infs))
	for i, x := range c.infs {
		synced[i] = x.inf.HasSynced
	}
	c.loop.Run(ctx, 1, synced...)
	return nil
}

// discover takes an informer for every kind that can be listed, watched and deleted.
func (c *GarbageCollector) discover() error {
	lists, err := discovery.ServerPreferredResources(c.cfg.Discovery)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"list", "watch", "delete"}}, lists)
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			k := gcKind{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
			gi, err := c.cfg.Informers.ForResource(k.gvr)
			if err != nil {
				c.loop.log.Debug("not collecting a kind without a shared informer", "resource", k.gvr, "err", err)
				continue
			}
			c.kinds[schema.GroupKind{Group: gv.Group, Kind: r.Kind}] = k
			inf := gi.Informer()
			inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.changed,
				UpdateFunc: func(_, obj any) { c.changed(obj) },
				DeleteFunc: func(any) { c.loop.EnqueueAfter(gcKey, gcDelay) }})
			c.infs = append(c.infs, gcInformer{k, inf})
		}
	}
	return nil
}

// changed schedules a scan for a change that can give it work. A scan walks every
// object (tens of milliseconds at 10k services): an object with owners or being
// deleted starts one (a deletion always does); a node's heartbeat cannot.
func (c *GarbageCollector) changed(obj any) {
	if o, err := meta.Accessor(obj); err == nil && (len(o.GetOwnerReferences()) > 0 || o.GetDeletionTimestamp() != nil) {
		c.loop.EnqueueAfter(gcKey, gcDelay)
	}
}

type gcNode struct {
	kind gcKind
	obj  metav1.Object
}

// scan walks every object once: dependents of vanished owners are deleted, dependents
// of owners deleting in the foreground are deleted first, dependents of orphaning
// owners lose the reference, and owners whose dependents are done lose the finalizer.
func (c *GarbageCollector) scan(ctx context.Context) error {
	byUID := map[types.UID]gcNode{}
	var all []gcNode
	for _, x := range c.infs {
		for _, item := range x.inf.GetStore().List() {
			o, err := meta.Accessor(item)
			if err != nil {
				continue
			}
			byUID[o.GetUID()] = gcNode{x.kind, o}
			all = append(all, gcNode{x.kind, o})
		}
	}
	dependents := map[types.UID]int{}
	for _, n := range all {
		for _, ref := range n.obj.GetOwnerReferences() {
			owner, exists := byUID[ref.UID]
			var err error
			switch {
			case !exists && allOwnersGone(n.obj, byUID) && !c.ownerLive(ctx, n.obj.GetNamespace(), ref):
				err = c.delete(ctx, n, metav1.DeletePropagationBackground)
			case exists && deleting(owner.obj, metav1.FinalizerOrphanDependents):
				err = c.dropOwner(ctx, n, ref.UID)
			case exists && deleting(owner.obj, metav1.FinalizerDeleteDependents):
				dependents[ref.UID]++
				err = c.delete(ctx, n, metav1.DeletePropagationForeground)
			case exists:
				dependents[ref.UID]++
			}
			if err != nil {
				return err
			}
		}
	}
	pending := false
	for _, n := range all {
		if n.obj.GetDeletionTimestamp() == nil {
			continue
		}
		for _, f := range []string{metav1.FinalizerDeleteDependents, metav1.FinalizerOrphanDependents} {
			if !slices.Contains(n.obj.GetFinalizers(), f) {
				continue
			}
			if f == metav1.FinalizerDeleteDependents && dependents[n.obj.GetUID()] > 0 {
				pending = true
				continue
			}
			if err := c.removeFinalizer(ctx, n, f); err != nil {
				return err
			}
		}
	}
	if pending {
		return ErrRequeue
	}
	return nil
}

// deleting: o is being deleted and waits for the collector with finalizer f.
func deleting(o metav1.Object, f string) bool {
	return o.GetDeletionTimestamp() != nil && slices.Contains(o.GetFinalizers(), f)
}

// ownerLive asks the API whether the owner the caches lack is there after all (made a
// moment ago, not in the cache yet): a dependent is never collected on stale data.
func (c *GarbageCollector) ownerLive(ctx context.Context, ns string, ref metav1.OwnerReference) bool {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	k, ok := c.kinds[schema.GroupKind{Group: gv.Group, Kind: ref.Kind}]
	if !ok {
		return false
	}
	client := c.cfg.Dynamic.Resource(k.gvr)
	var res dynamic.ResourceInterface = client
	if k.namespaced {
		res = client.Namespace(ns)
	}
	o, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
	return err == nil && o.GetUID() == ref.UID
}

func allOwnersGone(o metav1.Object, byUID map[types.UID]gcNode) bool {
	for _, ref := range o.GetOwnerReferences() {
		if _, ok := byUID[ref.UID]; ok {
			return false
		}
	}
	return true
}

func (c *GarbageCollector) resource(n gcNode) dynamic.ResourceInterface {
	if n.kind.namespaced {
		return c.cfg.Dynamic.Resource(n.kind.gvr).Namespace(n.obj.GetNamespace())
	}
	return c.cfg.Dynamic.Resource(n.kind.gvr)
}

func (c *GarbageCollector) delete(ctx context.Context, n gcNode, policy metav1.DeletionPropagation) error {
	if n.obj.GetDeletionTimestamp() != nil {
		return nil
	}
	c.loop.log.Info("garbage collecting", "resource", n.kind.gvr.Resource, "namespace", n.obj.GetNamespace(), "name", n.obj.GetName(), "propagation", policy)
	err := c.resource(n).Delete(ctx, n.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy,
		Preconditions: metav1.NewUIDPreconditions(string(n.obj.GetUID()))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // already gone, or replaced by a new object of the same name
	}
	return err
}

// patchMeta writes metadata fields of n with a merge patch that carries the cached
// resourceVersion, so a change the cache has not seen yet makes it a conflict.
func (c *GarbageCollector) patchMeta(ctx context.Context, n gcNode, fields map[string]any) error {
	fields["resourceVersion"] = n.obj.GetResourceVersion()
	patch, err := json.Marshal(map[string]any{"metadata": fields})
	if err != nil {
		return err
	}
	_, err = c.resource(n).Patch(ctx, n.obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *GarbageCollector) dropOwner(ctx context.Context, n gcNode, owner types.UID) error {
	keep := slices.DeleteFunc(slices.Clone(n.obj.GetOwnerReferences()), func(r metav1.OwnerReference) bool { return r.UID == owner })
	return c.patchMeta(ctx, n, map[string]any{"ownerReferences": keep})
}

func (c *GarbageCollector) removeFinalizer(ctx context.Context, n gcNode, f string) error {
	keep := slices.DeleteFunc(slices.Clone(n.obj.GetFinalizers()), func(x string) bool { return x == f })
	return c.patchMeta(ctx, n, map[string]any{"finalizers": keep})
}
