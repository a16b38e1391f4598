package apiserver

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultEventTTL is how long an event is kept after it last happened
// (kube-apiserver's --event-ttl).
const DefaultEventTTL = time.Hour

// expireEvents deletes events that last happened longer than ttl ago, as kube-apiserver
// lets etcd expire them, until ctx is cancelled.
func (s *Server) expireEvents(ctx context.Context, ttl time.Duration) {
	tick := time.NewTicker(min(ttl/4, time.Minute))
	defer tick.Stop()
	res := s.api.reg.Lookup("", "events")
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		objs, _, err := s.api.List(res, "", Selector{})
		if err != nil {
			continue
		}
		cutoff := time.Now().Add(-ttl)
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
				s.api.Delete(ctx, res, ev.Namespace, ev.Name, metav1.DeleteOptions{})
			}
		}
	}
}
