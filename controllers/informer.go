package controllers

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// WatchResource lists r and then follows its changes, calling handle for every object
// seen; when the watch ends (fell behind, history expired) it lists again. It returns
// when ctx is cancelled.
func WatchResource(ctx context.Context, api *apiserver.API, r *apiserver.Resource, log *slog.Logger, handle func(store.Object)) {
	for ctx.Err() == nil {
		objs, rev, err := api.List(r, "", apiserver.Selector{})
		if err != nil {
			log.Error("list failed", "resource", r.Plural, "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		for _, o := range objs {
			handle(o)
		}
		w, err := api.Watch(r, rev)
		if err != nil {
			continue
		}
		follow(ctx, w, handle)
	}
}

func follow(ctx context.Context, w *store.Watcher, handle func(store.Object)) {
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return
			}
			handle(ev.Object)
		case <-ctx.Done():
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runOwner runs a controller of owner resources: an owner's changes enqueue its key, and
// changes of the objects it controls (child resources whose controller is of ownerKind)
// enqueue their controller's key.
func runOwner(ctx context.Context, api *apiserver.API, l *Loop, owner, child *apiserver.Resource, ownerKind string) error {
	go WatchResource(ctx, api, owner, l.Log(), func(o store.Object) { l.Enqueue(key(o)) })
	go WatchResource(ctx, api, child, l.Log(), func(o store.Object) {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == ownerKind {
			l.Enqueue(o.GetNamespace() + "/" + ref.Name)
		}
	})
	l.Run(ctx, 2)
	return nil
}
