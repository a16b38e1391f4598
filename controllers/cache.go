package controllers

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// Informers share one watch-fed cache per resource among the controllers, so that a
// reconcile reads memory instead of listing the store (which decodes every object of
// the kind: at 10,000 services a list costs a controller ~100 ms per service change).
type Informers struct {
	api    *apiserver.API
	log    *slog.Logger
	mu     sync.Mutex
	caches map[*apiserver.Resource]*Cache
	start  chan struct{} // closed by Run
	ctx    context.Context
}

// NewInformers builds an empty set; controllers ask it For the resources they read.
func NewInformers(api *apiserver.API, log *slog.Logger) *Informers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Informers{api: api, log: log, caches: map[*apiserver.Resource]*Cache{}, start: make(chan struct{})}
}

// For returns the cache of r, started now if Run already ran.
func (in *Informers) For(r *apiserver.Resource) *Cache {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.caches[r]
	if c == nil {
		c = &Cache{res: r, objs: map[string]map[string]store.Object{}, synced: make(chan struct{})}
		c.cond = sync.NewCond(&c.mu)
		in.caches[r] = c
		if in.ctx != nil {
			go c.run(in.ctx, in.api, in.log)
		}
	}
	return c
}

// Run starts every cache and returns when ctx is cancelled.
func (in *Informers) Run(ctx context.Context) error {
	in.mu.Lock()
	in.ctx = ctx
	for _, c := range in.caches {
		go c.run(ctx, in.api, in.log)
	}
	in.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Cache is an in-memory copy of one resource kept by list and watch. Its objects are
// shared: callers must not modify them.
type Cache struct {
	res      *apiserver.Resource
	mu       sync.RWMutex
	cond     *sync.Cond
	objs     map[string]map[string]store.Object // namespace → name → object
	rev      int64                              // the newest revision seen
	synced   chan struct{}
	handlers []func(store.Object)
	// byLabel indexes objects by the value of label (namespace/value → name → object).
	label   string
	byLabel map[string]map[string]store.Object
}

// IndexLabel keeps an index on label's value for ByLabel; call it before Run.
func (c *Cache) IndexLabel(label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.label == label {
		return
	}
	c.label, c.byLabel = label, map[string]map[string]store.Object{}
	for _, objs := range c.objs {
		for _, o := range objs {
			c.index(o, true)
		}
	}
}

// ByLabel returns the objects in ns whose indexed label has value.
func (c *Cache) ByLabel(ns, value string) []store.Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []store.Object
	for _, o := range c.byLabel[ns+"/"+value] {
		out = append(out, o)
	}
	return out
}

func (c *Cache) index(o store.Object, add bool) {
	if c.label == "" {
		return
	}
	k := o.GetNamespace() + "/" + o.GetLabels()[c.label]
	if !add {
		delete(c.byLabel[k], o.GetName())
		if len(c.byLabel[k]) == 0 {
			delete(c.byLabel, k)
		}
		return
	}
	if c.byLabel[k] == nil {
		c.byLabel[k] = map[string]store.Object{}
	}
	c.byLabel[k][o.GetName()] = o
}

// OnChange registers f to be called (outside the cache's lock) with every object that
// is added, changed or deleted — for a change also with the object before it, so that
// handlers keyed by a label see both owners of an object that changed hands — and with
// everything again after a relist.
func (c *Cache) OnChange(f func(store.Object)) {
	c.mu.Lock()
	c.handlers = append(c.handlers, f)
	c.mu.Unlock()
}

// WaitSynced blocks until the first list is in, or ctx ends.
func (c *Cache) WaitSynced(ctx context.Context) bool {
	select {
	case <-c.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// WaitRev blocks until the cache has seen revision rev (a write of the caller's, so it
// reads its own writes), or ctx ends.
func (c *Cache) WaitRev(ctx context.Context, rev int64) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rev < rev && ctx.Err() == nil {
		c.cond.Wait()
	}
}

// Get returns ns/name, or nil.
func (c *Cache) Get(ns, name string) store.Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.objs[ns][name]
}

// List returns the objects in ns ("" for all) that sel matches.
func (c *Cache) List(ns string, sel apiserver.Selector) []store.Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []store.Object
	for n, objs := range c.objs {
		if ns != "" && n != ns {
			continue
		}
		for _, o := range objs {
			if sel.Matches(c.res, o) {
				out = append(out, o)
			}
		}
	}
	return out
}

func revOf(o store.Object) int64 {
	r, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return r
}

func (c *Cache) run(ctx context.Context, api *apiserver.API, log *slog.Logger) {
	for ctx.Err() == nil {
		objs, rev, err := api.List(c.res, "", apiserver.Selector{})
		if err != nil {
			log.Error("cache: list failed", "resource", c.res.Plural, "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		c.mu.Lock()
		changed := make([]store.Object, 0, len(objs))
		for _, byName := range c.objs {
			for _, o := range byName {
				changed = append(changed, o)
			}
		}
		c.objs = map[string]map[string]store.Object{}
		if c.label != "" {
			c.byLabel = map[string]map[string]store.Object{}
		}
		for _, o := range objs {
			c.put(o, false)
		}
		changed = append(changed, objs...)
		c.rev = max(c.rev, rev)
		c.cond.Broadcast()
		handlers := c.handlers
		c.mu.Unlock()
		select {
		case <-c.synced:
		default:
			close(c.synced)
		}
		for _, o := range changed {
			for _, h := range handlers {
				h(o)
			}
		}
		w, err := api.Watch(c.res, rev)
		if err != nil {
			continue
		}
		c.follow(ctx, w)
	}
}

func (c *Cache) follow(ctx context.Context, w *store.Watcher) {
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return
			}
			c.mu.Lock()
			c.put(ev.Object, ev.Type == store.Deleted)
			c.rev = max(c.rev, ev.Rev)
			c.cond.Broadcast()
			handlers := c.handlers
			c.mu.Unlock()
			for _, h := range handlers {
				h(ev.Object)
				if ev.Prev != nil {
					h(ev.Prev)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

func (c *Cache) put(o store.Object, deleted bool) {
	ns, name := o.GetNamespace(), o.GetName()
	if old := c.objs[ns][name]; old != nil {
		c.index(old, false)
	}
	if deleted {
		delete(c.objs[ns], name)
		return
	}
	c.index(o, true)
	if c.objs[ns] == nil {
		c.objs[ns] = map[string]store.Object{}
	}
	c.objs[ns][name] = o
}
