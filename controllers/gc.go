package controllers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// GCConfig configures the garbage collector.
type GCConfig struct {
	API *apiserver.API
	Log *slog.Logger
	// Informers are the shared caches to read from; nil: the collector keeps its own.
	Informers *Informers
}

// GarbageCollector deletes objects whose owners are gone and carries out the
// Foreground and Orphan propagation policies, as Kubernetes' garbage collector does.
// It works level-triggered on the whole graph: every change schedules one scan (changes
// arriving together share it), so a missed event is repaired by the next.
type GarbageCollector struct {
	api    *apiserver.API
	loop   *Loop
	inf    *Informers
	ownInf bool
}

const gcKey = "graph"

// gcDelay lets a burst of changes share one scan.
var gcDelay = 100 * time.Millisecond

// NewGarbageCollector builds the collector.
func NewGarbageCollector(cfg GCConfig) (*GarbageCollector, error) {
	if cfg.API == nil {
		return nil, errors.New("garbage collector: no API")
	}
	c := &GarbageCollector{api: cfg.API, inf: cfg.Informers}
	if c.inf == nil {
		c.inf, c.ownInf = NewInformers(cfg.API, cfg.Log), true
	}
	c.loop = NewLoop("garbagecollector", cfg.Log, func(ctx context.Context, _ string) error { return c.scan(ctx) })
	for _, r := range c.api.Registry().Resources() {
		cache := c.inf.For(r)
		cache.OnChange(func(o store.Object) {
			// A scan costs a walk over every object (tens of milliseconds at 10k
			// services): only changes that can give it work start one — an object
			// with owners, one being deleted, or one gone (its dependents may be
			// orphans). A node's heartbeat cannot.
			if len(o.GetOwnerReferences()) > 0 || o.GetDeletionTimestamp() != nil || cache.Get(o.GetNamespace(), o.GetName()) == nil {
				c.loop.EnqueueAfter(gcKey, gcDelay)
			}
		})
	}
	return c, nil
}

// Run collects until ctx is cancelled.
func (c *GarbageCollector) Run(ctx context.Context) error {
	if c.ownInf {
		go c.inf.Run(ctx)
	}
	for _, r := range c.api.Registry().Resources() {
		if !c.inf.For(r).WaitSynced(ctx) {
			return nil
		}
	}
	c.loop.Run(ctx, 1)
	return nil
}

type node struct {
	res *apiserver.Resource
	obj store.Object
}

// scan walks every object once: dependents of vanished owners are deleted, dependents
// of owners deleting in the foreground are deleted first, dependents of orphaning
// owners lose the reference, and owners whose dependents are done lose the finalizer.
func (c *GarbageCollector) scan(ctx context.Context) error {
	byUID := map[types.UID]node{}
	var all []node
	for _, r := range c.api.Registry().Resources() {
		for _, o := range c.inf.For(r).List("", apiserver.Selector{}) {
			byUID[o.GetUID()] = node{r, o}
			all = append(all, node{r, o})
		}
	}
	dependents := map[types.UID]int{}
	pending := false
	for _, n := range all {
		for _, ref := range n.obj.GetOwnerReferences() {
			owner, exists := byUID[ref.UID]
			switch {
			case !exists && allOwnersGone(n.obj, byUID) && !c.ownerLive(n.obj.GetNamespace(), ref):
				if err := c.delete(ctx, n, metav1.DeletePropagationBackground); err != nil {
					return err
				}
			case exists && owner.obj.GetDeletionTimestamp() != nil && hasFinalizer(owner.obj, apiserver.FinalizerOrphan):
				if err := c.dropOwner(ctx, n, ref.UID); err != nil {
					return err
				}
			case exists && owner.obj.GetDeletionTimestamp() != nil && hasFinalizer(owner.obj, apiserver.FinalizerForeground):
				dependents[ref.UID]++
				if err := c.delete(ctx, n, metav1.DeletePropagationForeground); err != nil {
					return err
				}
			case exists:
				dependents[ref.UID]++
			}
		}
	}
	for _, n := range all {
		if n.obj.GetDeletionTimestamp() == nil {
			continue
		}
		for _, f := range []string{apiserver.FinalizerForeground, apiserver.FinalizerOrphan} {
			if !hasFinalizer(n.obj, f) {
				continue
			}
			if f == apiserver.FinalizerForeground && dependents[n.obj.GetUID()] > 0 {
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

// ownerLive asks the store whether the owner the caches lack is there after all (made
// a moment ago, not in the cache yet): a dependent is never collected on stale data.
func (c *GarbageCollector) ownerLive(ns string, ref metav1.OwnerReference) bool {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	for _, r := range c.api.Registry().Resources() {
		if r.Group == gv.Group && r.Kind_ == ref.Kind {
			if !r.Namespaced {
				ns = ""
			}
			o, err := c.api.Get(r, ns, ref.Name)
			return err == nil && o.GetUID() == ref.UID
		}
	}
	return false
}

func allOwnersGone(o store.Object, byUID map[types.UID]node) bool {
	for _, ref := range o.GetOwnerReferences() {
		if _, ok := byUID[ref.UID]; ok {
			return false
		}
	}
	return true
}

func hasFinalizer(o store.Object, f string) bool {
	for _, x := range o.GetFinalizers() {
		if x == f {
			return true
		}
	}
	return false
}

func (c *GarbageCollector) delete(ctx context.Context, n node, policy metav1.DeletionPropagation) error {
	if n.obj.GetDeletionTimestamp() != nil {
		return nil
	}
	uid := n.obj.GetUID()
	c.loop.Log().Info("garbage collecting", "resource", n.res.Plural, "namespace", n.obj.GetNamespace(), "name", n.obj.GetName(), "propagation", policy)
	_, _, err := c.api.Delete(ctx, n.res, n.obj.GetNamespace(), n.obj.GetName(),
		metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // already gone, or replaced by a new object of the same name
	}
	return err
}

func (c *GarbageCollector) dropOwner(ctx context.Context, n node, owner types.UID) error {
	_, err := c.api.Update(ctx, n.res, n.obj.GetNamespace(), n.obj.GetName(), "", func(cur store.Object) (store.Object, error) {
		var keep []metav1.OwnerReference
		for _, ref := range cur.GetOwnerReferences() {
			if ref.UID != owner {
				keep = append(keep, ref)
			}
		}
		cur.SetOwnerReferences(keep)
		return cur, nil
	}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *GarbageCollector) removeFinalizer(ctx context.Context, n node, f string) error {
	_, err := c.api.Update(ctx, n.res, n.obj.GetNamespace(), n.obj.GetName(), "", func(cur store.Object) (store.Object, error) {
		var keep []string
		for _, x := range cur.GetFinalizers() {
			if x != f {
				keep = append(keep, x)
			}
		}
		cur.SetFinalizers(keep)
		return cur, nil
	}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
