package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// EventTTL is how long an event is kept after it last happened (kube-apiserver's
// --event-ttl default).
const EventTTL = time.Hour

// EventsConfig configures Events.
type EventsConfig struct {
	API *apiserver.API
	// TTL overrides EventTTL (tests).
	TTL time.Duration
	Log *slog.Logger
}

// Events writes the core/v1 Events that controllers and the node agent record through
// client-go's event correlator, as its recorder does: a repeat bumps the count and
// lastTimestamp of the Event already saying the same, many similar ones are combined,
// and one source's events about one object are rate-limited (25 at once, then one per
// 5 min), so a probe failing every second does not write every second. Recording
// never waits for the store: a full queue drops the event. Events older than the TTL
// are deleted.
type Events struct {
	api        *apiserver.API
	res        *apiserver.Resource
	ttl        time.Duration
	log        *slog.Logger
	queue      chan *corev1.Event
	correlator *record.EventCorrelator // used by Run's goroutine alone
}

// NewEvents builds the event writer.
func NewEvents(cfg EventsConfig) (*Events, error) {
	if cfg.API == nil {
		return nil, errors.New("events: no API")
	}
	if cfg.TTL == 0 {
		cfg.TTL = EventTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Events{api: cfg.API, res: cfg.API.Registry().Lookup("", "events"), ttl: cfg.TTL, log: cfg.Log,
		queue: make(chan *corev1.Event, 1000), correlator: record.NewEventCorrelator(clock.RealClock{})}, nil
}

// Recorder records events from one component (and host, for the kubelet).
type Recorder struct {
	events *Events
	source corev1.EventSource
}

// For returns a recorder for component; a nil Events gives one that records nothing.
func (e *Events) For(component, host string) *Recorder {
	return &Recorder{events: e, source: corev1.EventSource{Component: component, Host: host}}
}

// Event records that reason happened to obj; eventType is Normal or Warning.
func (r *Recorder) Event(obj store.Object, eventType, reason, format string, args ...any) {
	r.event(obj, "", eventType, reason, format, args...)
}

// ContainerEvent records an event about one container of a pod, as the kubelet does.
func (r *Recorder) ContainerEvent(pod *corev1.Pod, container, eventType, reason, format string, args ...any) {
	r.event(pod, fmt.Sprintf("spec.containers{%s}", container), eventType, reason, format, args...)
}

func (r *Recorder) event(obj store.Object, fieldPath, eventType, reason, format string, args ...any) {
	if r == nil || r.events == nil {
		return
	}
	ref, err := reference.GetPartialReference(apiserver.Scheme, obj, fieldPath)
	if err != nil {
		r.events.log.Debug("event about an object of no known kind", "reason", reason, "err", err)
		return
	}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault // events about cluster-scoped objects, as Kubernetes
	}
	now := metav1.Now()
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, InvolvedObject: *ref, Reason: reason,
		Message: fmt.Sprintf(format, args...), Type: eventType, Source: r.source, Count: 1,
		FirstTimestamp: now, LastTimestamp: now, ReportingController: r.source.Component, ReportingInstance: r.source.Host}
	select {
	case r.events.queue <- ev:
	default:
		r.events.log.Debug("event dropped: queue full", "reason", reason, "object", ns+"/"+obj.GetName())
	}
}

// Run writes recorded events and expires old ones until ctx is cancelled.
func (e *Events) Run(ctx context.Context) error {
	expire := time.NewTicker(min(e.ttl/4, time.Minute))
	defer expire.Stop()
	for {
		select {
		case ev := <-e.queue:
			if err := e.write(ctx, ev); err != nil && ctx.Err() == nil {
				e.log.Debug("event not written", "reason", ev.Reason, "err", err)
			}
		case <-expire.C:
			e.expire(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}

// write creates ev, or updates the Event the correlator says it repeats.
func (e *Events) write(ctx context.Context, ev *corev1.Event) error {
	ev.Name = fmt.Sprintf("%s.%x", ev.InvolvedObject.Name, time.Now().UnixNano())
	res, err := e.correlator.EventCorrelate(ev)
	if err != nil || res.Skip {
		return err
	}
	ev = res.Event
	var out store.Object
	if ev.Count > 1 {
		out, err = e.api.Update(ctx, e.res, ev.Namespace, ev.Name, "", func(cur store.Object) (store.Object, error) {
			c := cur.(*corev1.Event)
			c.Count, c.Message, c.LastTimestamp = ev.Count, ev.Message, ev.LastTimestamp
			return c, nil
		}, false)
	}
	if ev.Count <= 1 || apierrors.IsNotFound(err) { // new, or gone (expired, its namespace emptied)
		ev.ResourceVersion = ""
		out, err = e.api.Create(ctx, e.res, ev.Namespace, ev, false)
	}
	if err != nil {
		return err
	}
	e.correlator.UpdateState(out.(*corev1.Event))
	return nil
}

// expire deletes events that last happened longer than the TTL ago.
func (e *Events) expire(ctx context.Context) {
	objs, _, err := e.api.List(e.res, "", apiserver.Selector{})
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-e.ttl)
	for _, o := range objs {
		ev := o.(*corev1.Event)
		last := ev.LastTimestamp.Time
		if last.IsZero() {
			last = ev.EventTime.Time
		}
		if last.IsZero() {
			last = ev.CreationTimestamp.Time
		}
		if last.Before(cutoff) {
			e.api.Delete(ctx, e.res, ev.Namespace, ev.Name, metav1.DeleteOptions{})
		}
	}
}
