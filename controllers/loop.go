package controllers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// ErrRequeue asks for another pass later without logging an error (work in progress).
var ErrRequeue = errors.New("requeue")

// Loop is the level-triggered core every controller shares: events only enqueue keys;
// workers call reconcile(key), which re-reads current state and is safe to repeat.
// Failures are retried with exponential backoff.
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
	return &Loop{name: name, log: log, reconcile: reconcile, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// Enqueue schedules key for reconciliation.
func (l *Loop) Enqueue(key string) { l.queue.Add(key) }

// EnqueueAfter schedules key after d.
func (l *Loop) EnqueueAfter(key string, d time.Duration) { l.queue.AddAfter(key, d) }

// Log is the loop's logger.
func (l *Loop) Log() *slog.Logger { return l.log }

// Run processes keys with workers goroutines until ctx is cancelled.
func (l *Loop) Run(ctx context.Context, workers int) {
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

func (l *Loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.reconcile(ctx, key); err != nil {
		if !errors.Is(err, ErrRequeue) && ctx.Err() == nil {
			l.log.Error("reconcile failed", "controller", l.name, "key", key, "err", err)
		}
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}
