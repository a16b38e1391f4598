package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"

	"github.com/minicluster/minicluster/store"
)

// watchLimiter counts each client's open watches.
type watchLimiter struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func (l *watchLimiter) acquire(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client] >= l.max {
		return false
	}
	l.open[client]++
	return true
}

func (l *watchLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client]--; l.open[client] <= 0 {
		delete(l.open, client)
	}
}

// clientKey names who is asking: the address a TCP client comes from, the process on
// the unix socket.
func clientKey(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	if peer, ok := r.Context().Value(peerKey{}).(string); ok {
		return peer
	}
	return "the unix socket"
}

// bookmarkInterval is how often a watch that allows bookmarks gets one.
var bookmarkInterval = 10 * time.Second

// watchEvent is the wire form of one event: {"type":..., "object":...}.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

type watchStream struct {
	w       http.ResponseWriter
	flusher http.Flusher
	req     *request
	columns bool      // the next Table event carries column definitions
	frames  io.Writer // length-delimited frames, when the client watches in protobuf
	// batch leaves flushing to the caller, who flushes when no event is waiting.
	batch bool
}

func (s *watchStream) flush() {
	if !s.batch {
		s.flusher.Flush()
	}
}

func (s *watchStream) send(typ string, obj runtime.Object) error { return s.sendEvent(typ, obj, nil) }

// sendEvent sends one event; ev, when obj is its object, keeps the JSON line for the
// other watchers of the same event.
func (s *watchStream) sendEvent(typ string, obj runtime.Object, ev *store.Event) error {
	if s.req.out.table && typ != "ERROR" && typ != "BOOKMARK" {
		t := s.req.res.Table([]store.Object{obj.(store.Object)}, s.columns, includeObject(s.req))
		s.columns = false
		obj = t
	}
	setTypeMeta(obj)
	if s.frames != nil {
		var buf bytes.Buffer
		if err := pbSerializer.Encode(obj, &buf); err != nil {
			return err
		}
		if err := pbRaw.Encode(&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: buf.Bytes()}}, s.frames); err != nil {
			return err
		}
		s.flush()
		return nil
	}
	encode := func() []byte {
		data, err := json.Marshal(obj)
		if err != nil {
			return nil
		}
		line, _ := json.Marshal(watchEvent{Type: typ, Object: data})
		return append(line, '\n')
	}
	var line []byte
	if ev != nil && runtime.Object(ev.Object) == obj && !s.req.out.table {
		line = ev.Memo("json "+typ, encode)
	} else {
		line = encode()
	}
	if line == nil {
		return fmt.Errorf("encode %s event", typ)
	}
	if _, err := s.w.Write(line); err != nil {
		return err
	}
	s.flush()
	return nil
}

func (s *watchStream) sendError(err error) {
	st := err.(apierrors.APIStatus).Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	_ = s.send("ERROR", &st)
}

func (s *watchStream) bookmark(rev int64, initialEnd bool) error {
	obj := s.req.res.New()
	obj.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		obj.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return s.send("BOOKMARK", obj)
}

func watchTimeout(q map[string][]string) time.Duration {
	if v, err := strconv.Atoi(first(q["timeoutSeconds"])); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	// Kubernetes ends unbounded watches after 30-60 minutes so clients rebalance.
	return 30*time.Minute + time.Duration(rand.Int64N(int64(30*time.Minute)))
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// watch streams events as newline-delimited JSON until the timeout, the client leaving
// or the server stopping.
// scope names a request's scope as kube-apiserver's metrics do.
func scope(req *request) string {
	switch {
	case !req.res.Namespaced:
		return "cluster"
	case req.ns != "":
		return "namespace"
	}
	return "cluster"
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request, req *request) {
	sel, err := h.selector(req)
	if err != nil {
		writeError(w, err)
		return
	}
	client := clientKey(r)
	if !h.watches.acquire(client) {
		writeError(w, apierrors.NewTooManyRequests(fmt.Sprintf("too many watches from %s: at most %d at once", client, h.watches.max), 1))
		return
	}
	defer h.watches.release(client)
	open := h.watching.WithLabelValues(req.res.Group, req.res.Version, req.res.Plural, scope(req))
	open.Inc()
	defer open.Dec()
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("streaming unsupported")))
		return
	}
	rvParam := req.query.Get("resourceVersion")
	sendInitial := isTrue(req.query.Get("sendInitialEvents"))
	var initial []store.Object
	var from int64
	if rvParam == "" || rvParam == "0" || sendInitial {
		if initial, from, err = h.api.List(req.res, req.ns, sel); err != nil {
			writeError(w, err)
			return
		}
	} else if from, err = strconv.ParseInt(rvParam, 10, 64); err != nil || from < 0 {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rvParam)))
		return
	}
	watcher, werr := h.api.Watch(req.res, from)
	stream := &watchStream{w: w, flusher: flusher, req: req, columns: true}
	w.Header().Set("Content-Type", "application/json")
	if req.out.protobuf {
		w.Header().Set("Content-Type", protobufType+";stream=watch")
		stream.frames = protobuf.LengthDelimitedFramer.NewFrameWriter(w)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	if werr != nil {
		stream.sendError(apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, h.api.store.Rev())))
		return
	}
	defer watcher.Stop()
	for _, obj := range initial {
		if stream.send("ADDED", obj) != nil {
			return
		}
	}
	if sendInitial && stream.bookmark(from, true) != nil {
		return
	}
	h.follow(r, stream, watcher, sel, from)
}

func (h *handler) follow(r *http.Request, stream *watchStream, watcher *store.Watcher, sel Selector, last int64) {
	req := stream.req
	timeout := time.NewTimer(watchTimeout(req.query))
	defer timeout.Stop()
	var bookmarks <-chan time.Time
	if isTrue(req.query.Get("allowWatchBookmarks")) {
		t := time.NewTicker(bookmarkInterval)
		defer t.Stop()
		bookmarks = t.C
	}
	// Events are written as they come and flushed when none is waiting: one write to
	// the connection per burst, not per event.
	stream.batch = true
	defer func() { stream.batch = false }()
	for {
		select {
		case ev, ok := <-watcher.Events():
			if !ok {
				return // fell behind or store closed: the client resumes from last
			}
			last = ev.Rev
			typ, obj := selectEvent(req, sel, ev)
			if typ != "" && stream.sendEvent(typ, req.res.external(obj), ev) != nil {
				return
			}
			if len(watcher.Events()) == 0 {
				stream.flusher.Flush()
			}
		case <-bookmarks:
			if stream.bookmark(last, false) != nil {
				return
			}
			stream.flusher.Flush()
		case <-timeout.C:
			return
		case <-r.Context().Done():
			return
		case <-h.stopping:
			return
		}
	}
}

// selectEvent maps a store event to what a watcher with a namespace and selectors sees:
// an object entering the selection is ADDED, one leaving it DELETED.
func selectEvent(req *request, sel Selector, ev *store.Event) (string, store.Object) {
	if req.ns != "" && ev.Object.GetNamespace() != req.ns {
		return "", nil
	}
	now := sel.Matches(req.res, ev.Object)
	if ev.Type != store.Modified {
		if now {
			return string(ev.Type), ev.Object
		}
		return "", nil
	}
	before := ev.Prev != nil && sel.Matches(req.res, ev.Prev)
	switch {
	case now && before:
		return string(store.Modified), ev.Object
	case now:
		return string(store.Added), ev.Object
	case before:
		return string(store.Deleted), ev.Object
	}
	return "", nil
}
