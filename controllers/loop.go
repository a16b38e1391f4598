package controllers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ErrRequeue asks for another pass later without logging an error (work in progress,
// or a cache that has not yet seen the controller's own last write).
var ErrRequeue = errors.New("requeue")

// Loop is the level-triggered core every controller shares (sample-controller's shape):
// informer events only enqueue keys; workers call reconcile(key), which re-reads
// current state and is safe to repeat. Failures are retried with exponential backoff.
type Loop struct {
	name      string
	log       *slog.Logger
	queue     workqueue.TypedRateLimitingInterface[string]
	reconcile func(ctx context.Context, key string) error
}

// NewLoop builds a loop that calls reconcile for every queued key.
func NewLoop(name string, log *slog.Logger, reconcile func(context.Context, string) error) *Loop {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loop{name: name, log: log.With("controller", name), reconcile: reconcile, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// Enqueue schedules key for reconciliation.
func (l *Loop) Enqueue(key string) { l.queue.Add(key) }

// EnqueueAfter schedules key after d.
func (l *Loop) EnqueueAfter(key string, d time.Duration) { l.queue.AddAfter(key, d) }

// EnqueueObject schedules the namespace/name of obj (a deleted one's tombstone too).
func (l *Loop) EnqueueObject(obj any) {
	if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		l.queue.Add(k)
	}
}

// Handler enqueues every object an informer delivers.
func (l *Loop) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: l.EnqueueObject,
		UpdateFunc: func(_, obj any) { l.EnqueueObject(obj) }, DeleteFunc: l.EnqueueObject}
}

// Run waits for the caches, then processes keys with workers goroutines until ctx is
// cancelled, and returns once every worker has stopped.
func (l *Loop) Run(ctx context.Context, workers int, synced ...cache.InformerSynced) {
	defer l.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	stop := context.AfterFunc(ctx, l.queue.ShutDown)
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for l.next(ctx) {
			}
		})
	}
	wg.Wait()
}

func (l *Loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.reconcile(ctx, key); err != nil {
		// A conflict is a cache behind the store: the newer object is on its way.
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrRequeue) || apierrors.IsConflict(err):
			l.log.Debug("reconcile again later", "key", key, "err", err)
		default:
			l.log.Error("reconcile failed", "key", key, "err", err)
		}
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}
