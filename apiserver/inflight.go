package apiserver

import (
	"context"
	"net/http"
	"runtime"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// inFlight bounds the requests served at once, as kube-apiserver's
// --max-requests-inflight and --max-mutating-requests-inflight do: past either, a 429
// with Retry-After (client-go waits and retries). Long-running requests (watches, logs,
// exec, attach, port-forward, proxy) are not counted. Lists also queue for one of a
// few list slots: each holds its whole answer in memory while it is encoded (issue 19:
// 20 lists of 30 MB at once took the daemon to 1.9 GB).
type inFlight struct {
	reads, writes, lists chan struct{}
	listWait             time.Duration
}

// listSlots is how many lists are encoded at once; the rest wait up to listWait.
var listSlots = max(4, 2*runtime.GOMAXPROCS(0))

func newInFlight(reads, writes int) *inFlight {
	return &inFlight{reads: make(chan struct{}, reads), writes: make(chan struct{}, writes),
		lists: make(chan struct{}, listSlots), listWait: time.Minute}
}

func longRunning(r *http.Request, req *request) bool {
	switch req.sub {
	case "log", "exec", "attach", "portforward", "proxy":
		return true
	}
	return r.Method == http.MethodGet && req.name == "" && isTrue(req.query.Get("watch"))
}

// enter takes the request's places, or answers 429 and returns false. The caller
// calls the returned leave when done.
func (f *inFlight) enter(w http.ResponseWriter, r *http.Request, req *request) (leave func(), ok bool) {
	if longRunning(r, req) {
		return func() {}, true
	}
	limit := f.reads
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		limit = f.writes
	}
	select {
	case limit <- struct{}{}:
	default:
		tooMany(w)
		return nil, false
	}
	if r.Method != http.MethodGet || req.name != "" {
		return func() { <-limit }, true
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.listWait)
	defer cancel()
	select {
	case f.lists <- struct{}{}:
		return func() { <-f.lists; <-limit }, true
	case <-ctx.Done():
		<-limit
		tooMany(w)
		return nil, false
	}
}

func tooMany(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, apierrors.NewTooManyRequests("Too many requests, please try again later.", 1))
}
