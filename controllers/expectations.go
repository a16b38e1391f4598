package controllers

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// expectationTimeout is how long a controller waits for its cache to show its own
// writes before it acts anyway (a relist can skip the very event it waits for).
const expectationTimeout = 10 * time.Second

// expectations remember, per controller key, what the controller last wrote, so that a
// reconcile never acts on a cache that does not yet show it — the job of Kubernetes'
// ControllerExpectations: a ReplicaSet that just created two pods must not create them
// again because the pod cache has not caught up. Writes are followed by resourceVersion
// (minicluster's is one global revision, so the cache has seen a write once its
// informer has delivered any event at least as new); deletions by UID.
type expectations struct {
	seen atomic.Int64 // the newest resourceVersion the informer has delivered

	mu sync.Mutex
	m  map[string]*expected
}

type expected struct {
	rv    int64
	gone  map[types.UID]string // deleted objects: uid → name
	since time.Time
}

func newExpectations() *expectations { return &expectations{m: map[string]*expected{}} }

// handler keeps seen up to date; register it on the informer of the written kind.
func (e *expectations) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: e.observe,
		UpdateFunc: func(_, obj any) { e.observe(obj) }, DeleteFunc: e.observe}
}

func (e *expectations) observe(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	rv := resourceVersion(m)
	for cur := e.seen.Load(); rv > cur && !e.seen.CompareAndSwap(cur, rv); cur = e.seen.Load() {
	}
}

func resourceVersion(o metav1.Object) int64 {
	rv, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return rv
}

func (e *expectations) entry(key string) *expected {
	x := e.m[key]
	if x == nil {
		x = &expected{gone: map[types.UID]string{}}
		e.m[key] = x
	}
	x.since = time.Now()
	return x
}

// wrote records that the controller of key created or updated obj.
func (e *expectations) wrote(key string, obj metav1.Object) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.entry(key)
	x.rv = max(x.rv, resourceVersion(obj))
}

// deleted records that the controller of key deleted obj.
func (e *expectations) deleted(key string, obj metav1.Object) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.entry(key).gone[obj.GetUID()] = obj.GetName()
}

// met reports whether the cache shows everything key's controller wrote; present says
// whether the cache still holds the live (not terminating) object of that name and UID.
func (e *expectations) met(key string, present func(name string, uid types.UID) bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[key]
	if x == nil {
		return true
	}
	for uid, name := range x.gone {
		if !present(name, uid) {
			delete(x.gone, uid)
		}
	}
	if (x.rv <= e.seen.Load() && len(x.gone) == 0) || time.Since(x.since) > expectationTimeout {
		delete(e.m, key)
		return true
	}
	return false
}

// forget drops what is expected for key (its object is gone).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	delete(e.m, key)
	e.mu.Unlock()
}
