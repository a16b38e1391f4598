package controllers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// errRequeue asks for another pass later without logging an error (work in progress).
var errRequeue = errors.New("requeue")

// loop is the level-triggered core every controller shares: events only enqueue keys;
// workers call reconcile(key), which re-reads current state and is safe to repeat.
// Failures are retried with exponential backoff.
type loop struct {
	name      string
	log       *slog.Logger
	queue     workqueue.TypedRateLimitingInterface[string]
	reconcile func(ctx context.Context, key string) error
}

func newLoop(name string, log *slog.Logger, reconcile func(context.Context, string) error) *loop {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &loop{name: name, log: log, reconcile: reconcile, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

func (l *loop) enqueue(key string) { l.queue.Add(key) }

// run processes keys with workers goroutines until ctx is cancelled.
func (l *loop) run(ctx context.Context, workers int) {
	go func() {
		<-ctx.Done()
		l.queue.ShutDown()
	}()
	done := make(chan struct{})
	for i := 0; i < workers; i++ {
		go func() {
			for l.next(ctx) {
			}
			done <- struct{}{}
		}()
	}
	for i := 0; i < workers; i++ {
		<-done
	}
}

func (l *loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.reconcile(ctx, key); err != nil {
		if !errors.Is(err, errRequeue) && ctx.Err() == nil {
			l.log.Error("reconcile failed", "controller", l.name, "key", key, "err", err)
		}
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}
