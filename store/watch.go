package store

import (
	"sync"
)

// EventType is the kind of change an Event reports.
type EventType string

// Event types, spelled as in Kubernetes watch streams.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one committed change.
type Event struct {
	Type   EventType
	Object Object
	// Prev is the object before a modification (nil otherwise); watchers with
	// selectors need it to tell an object leaving their selection.
	Prev   Object
	Rev    int64
	bucket string
	memoMu sync.Mutex
	memo   map[string][]byte
}

// Memo returns what make returns for key, made once per event however many watchers
// ask: each watcher serialising every event itself is what limits a watch's fan-out.
func (e *Event) Memo(key string, make func() []byte) []byte {
	e.memoMu.Lock()
	defer e.memoMu.Unlock()
	if b, ok := e.memo[key]; ok {
		return b
	}
	if e.memo == nil {
		e.memo = map[string][]byte{}
	}
	b := make()
	e.memo[key] = b
	return b
}

// newEvent records a change. Watchers share the event's object: writers get a copy
// back (see Create, Update, Delete), as they may go on to modify it.
func newEvent(k *Kind, t EventType, obj, prev Object, rev int64) *Event {
	return &Event{Type: t, Object: obj, Prev: prev, Rev: rev, bucket: k.Bucket}
}

// hub keeps recent events and fans new ones out to watchers.
type hub struct {
	mu       sync.Mutex
	ring     []*Event // circular, len == capacity once full
	next     int      // write position in ring
	floor    int64    // every event after floor is in ring
	watchers map[*Watcher]struct{}
}

func newHub(capacity int, rev int64) *hub {
	return &hub{ring: make([]*Event, 0, capacity), floor: rev, watchers: map[*Watcher]struct{}{}}
}

func (h *hub) publish(evs []*Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range evs {
		if len(h.ring) < cap(h.ring) {
			h.ring = append(h.ring, ev)
		} else {
			h.floor = h.ring[h.next].Rev
			h.ring[h.next] = ev
			h.next = (h.next + 1) % len(h.ring)
		}
		for w := range h.watchers {
			if w.bucket == ev.bucket && ev.Rev > w.after && !w.offer(ev) {
				delete(h.watchers, w)
			}
		}
	}
}

// history returns the kept events in order.
func (h *hub) history() []*Event {
	if len(h.ring) < cap(h.ring) {
		return h.ring
	}
	return append(append([]*Event(nil), h.ring[h.next:]...), h.ring[:h.next]...)
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.stop()
		delete(h.watchers, w)
	}
}

// watchBuffer is how far a watcher may fall behind before it is ended; its client
// then resumes from the last revision it saw, as Kubernetes clients do.
const watchBuffer = 4096

// Watcher receives the events of one kind after a revision.
type Watcher struct {
	bucket string
	after  int64
	ch     chan *Event
	once   sync.Once
	h      *hub
}

// offer queues ev without blocking; false means the watcher fell behind and is ended.
func (w *Watcher) offer(ev *Event) bool {
	select {
	case w.ch <- ev:
		return true
	default:
		w.stop()
		return false
	}
}

func (w *Watcher) stop() { w.once.Do(func() { close(w.ch) }) }

// Events delivers events in revision order; it is closed when the watch ends (Stop,
// store closed, or the watcher fell too far behind).
func (w *Watcher) Events() <-chan *Event { return w.ch }

// Stop ends the watch.
func (w *Watcher) Stop() {
	w.h.mu.Lock()
	delete(w.h.watchers, w)
	w.h.mu.Unlock()
	w.stop()
}

// Watch streams the changes of kind k committed after revision rev. It returns
// ErrExpired when events after rev are no longer kept.
func (s *Store) Watch(k *Kind, rev int64) (*Watcher, error) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev < h.floor {
		return nil, ErrExpired
	}
	var backlog []*Event
	for _, ev := range h.history() {
		if ev.Rev > rev && ev.bucket == k.Bucket {
			backlog = append(backlog, ev)
		}
	}
	w := &Watcher{bucket: k.Bucket, after: rev, h: h, ch: make(chan *Event, len(backlog)+watchBuffer)}
	for _, ev := range backlog {
		w.ch <- ev
	}
	select {
	case <-s.closed:
		w.stop()
	default:
		h.watchers[w] = struct{}{}
	}
	return w, nil
}
