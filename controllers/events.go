package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Events writes the core/v1 Events the controllers, the scheduler and the node agent
// record, through client-go's broadcaster as Kubernetes components do: a repeat bumps
// the count and lastTimestamp of the Event already saying the same, many similar ones
// are combined, one source's events about one object are rate-limited (25 at once,
// then one per 5 min), and recording never waits for the API (a full queue drops the
// event). The API server expires them (its event TTL).
type Events struct {
	broadcaster record.EventBroadcaster
	sink        watch.Interface
}

// NewEvents builds the event writer. It takes events from now on (none is lost to a
// recorder used before Run), written once the API serves; Run ends the writing.
func NewEvents(client kubernetes.Interface) *Events {
	b := record.NewBroadcaster()
	return &Events{broadcaster: b, sink: b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})}
}

// Recorder returns a recorder for component (and host, for the kubelet).
func (e *Events) Recorder(component, host string) record.EventRecorder {
	return e.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: host})
}

// Run writes recorded events until ctx is cancelled.
func (e *Events) Run(ctx context.Context) error {
	<-ctx.Done()
	e.sink.Stop()
	e.broadcaster.Shutdown()
	return nil
}
