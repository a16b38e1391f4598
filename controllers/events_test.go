package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/apiserver"
)

// poll retries check until it returns nil or 5 s pass.
func poll(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startEvents(t *testing.T, api *apiserver.API, ttl time.Duration) *Events {
	ev, err := NewEvents(EventsConfig{API: api, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ev.Run(ctx)
	return ev
}

func listEvents(t *testing.T, api *apiserver.API) []*corev1.Event {
	objs, _, err := api.List(api.Registry().Lookup("", "events"), "", apiserver.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Event
	for _, o := range objs {
		out = append(out, o.(*corev1.Event))
	}
	return out
}

// The same thing happening again is one Event with a count, as client-go's recorder
// makes it; another reason is another Event; the reference names the object.
func TestEventsRecordAndCount(t *testing.T) {
	api := newAPI(t)
	ev := startEvents(t, api, 0)
	obj, err := api.Create(context.Background(), api.Registry().Lookup("", "pods"), "default", pod("web"), false)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	rec := ev.For("kubelet", "node1")
	for range 3 {
		rec.ContainerEvent(p, "c", corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s", "c")
	}
	rec.Event(p, corev1.EventTypeNormal, "Scheduled", "Successfully assigned default/web to node1")
	poll(t, func() error {
		evs := listEvents(t, api)
		i := slices.IndexFunc(evs, func(e *corev1.Event) bool { return e.Reason == "BackOff" })
		if len(evs) != 2 || i < 0 || evs[i].Count != 3 {
			return fmt.Errorf("events: %v", evs)
		}
		e := evs[i]
		want := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "default", Name: "web", UID: p.UID,
			ResourceVersion: p.ResourceVersion, FieldPath: "spec.containers{c}"}
		if e.InvolvedObject != want || e.Source != (corev1.EventSource{Component: "kubelet", Host: "node1"}) ||
			e.Type != corev1.EventTypeWarning || e.Message != "Back-off restarting failed container c" || e.LastTimestamp.Before(&e.FirstTimestamp) {
			return fmt.Errorf("event %+v", e)
		}
		return nil
	})
	// One source's events of one type about one object are rate-limited as client-go's
	// are: a burst of 25 is written (counted), the rest dropped. Events are written in order,
	// so once an event about another object is there, all of these were handled.
	other, err := api.Create(context.Background(), api.Registry().Lookup("", "pods"), "default", pod("other"), false)
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		rec.Event(p, corev1.EventTypeWarning, "Unhealthy", "Readiness probe failed")
	}
	rec.Event(other.(*corev1.Pod), corev1.EventTypeNormal, "Marker", "after the others")
	poll(t, func() error {
		counts := map[string]int32{}
		for _, e := range listEvents(t, api) {
			counts[e.Reason] += e.Count
		}
		if counts["Marker"] != 1 {
			return fmt.Errorf("events: %v", counts)
		}
		if counts["Unhealthy"] != 25-3 { // the 3 Warning BackOffs above drew on the same budget (source, object, type)
			t.Errorf("Unhealthy counted %d times of 40, want 22 (a burst of 25, 3 used)", counts["Unhealthy"])
		}
		return nil
	})
	// A nil Events records nothing and does not panic (components built without one).
	var none *Events
	none.For("x", "").Event(p, corev1.EventTypeNormal, "R", "m")
}

// Events that last happened longer than the TTL ago are deleted; newer ones stay.
func TestEventsExpire(t *testing.T) {
	api := newAPI(t)
	res := api.Registry().Lookup("", "events")
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	for name, last := range map[string]metav1.Time{"old": old, "new": metav1.Now()} {
		e := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p"},
			Reason: "R", LastTimestamp: last}
		if _, err := api.Create(context.Background(), res, "default", e, false); err != nil {
			t.Fatal(err)
		}
	}
	startEvents(t, api, 2*time.Second) // checked every 500 ms
	poll(t, func() error {
		var names []string
		for _, e := range listEvents(t, api) {
			names = append(names, e.Name)
		}
		if !slices.Equal(names, []string{"new"}) {
			return fmt.Errorf("events %v, want only the new one", names)
		}
		return nil
	})
}
