package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

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

// Events writes the core/v1 Events that controllers and the node agent record, as
// client-go's recorder does: one Event per object, reason and message, whose count and
// lastTimestamp grow when it happens again. Recording never waits for the store: a
// full queue drops the event. Events older than the TTL are deleted.
type Events struct {
	api   *apiserver.API
	res   *apiserver.Resource
	ttl   time.Duration
	log   *slog.Logger
	queue chan *corev1.Event

	mu   sync.Mutex
	seen map[string]string // object UID, reason, message → the Event's name
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
		queue: make(chan *corev1.Event, 1000), seen: map[string]string{}}, nil
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
	ref := corev1.ObjectReference{Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(),
		ResourceVersion: obj.GetResourceVersion(), FieldPath: fieldPath}
	if gvks, _, err := apiserver.Scheme.ObjectKinds(obj.(runtime.Object)); err == nil && len(gvks) > 0 {
		ref.APIVersion, ref.Kind = gvks[0].GroupVersion().String(), gvks[0].Kind
	}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault // events about cluster-scoped objects, as Kubernetes
	}
	now := metav1.Now()
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, InvolvedObject: ref, Reason: reason,
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

// write creates ev, or bumps the count of the Event already saying the same.
func (e *Events) write(ctx context.Context, ev *corev1.Event) error {
	k := string(ev.InvolvedObject.UID) + "\x00" + ev.InvolvedObject.FieldPath + "\x00" + ev.Reason + "\x00" + ev.Message
	e.mu.Lock()
	name, seen := e.seen[k]
	e.mu.Unlock()
	if seen {
		_, err := e.api.Update(ctx, e.res, ev.Namespace, name, "", func(cur store.Object) (store.Object, error) {
			c := cur.(*corev1.Event)
			c.Count++
			c.LastTimestamp = ev.LastTimestamp
			return c, nil
		}, false)
		if err == nil {
			return nil
		}
		// gone (expired, or its namespace emptied): a new one
	}
	ev.Name = fmt.Sprintf("%s.%x", ev.InvolvedObject.Name, time.Now().UnixNano())
	if _, err := e.api.Create(ctx, e.res, ev.Namespace, ev, false); err != nil {
		return err
	}
	e.mu.Lock()
	if len(e.seen) > 10000 {
		clear(e.seen) // a bound; forgetting only means a new Event instead of a count
	}
	e.seen[k] = ev.Name
	e.mu.Unlock()
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
