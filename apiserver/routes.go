package apiserver

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// routes lays out the API's URL space as kube-apiserver does: health and version,
// metrics and profiling, OpenAPI, discovery, and every resource at
// /api/{version}/[namespaces/{namespace}/]{resource}[/{name}[/{subresource}]] and
// /apis/{group}/{version}/... — with pods' and services' proxy under their names.
func (h *handler) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(h.recoverPanics, h.closeWhenStopping, middleware.StripSlashes)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) { writeError(w, errNoSuchResource) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{}, strings.ToLower(r.Method)))
	})
	ok := func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }
	r.Get("/healthz", ok)
	r.Get("/livez", ok)
	r.Get("/readyz", h.readyz)
	r.Get("/version", func(w http.ResponseWriter, _ *http.Request) { writeJSONValue(w, versionInfo()) })
	r.Get("/metrics", h.serveMetrics)
	r.Get("/debug/pprof/profile", pprof.Profile) // as kube-apiserver's --profiling, behind the token
	r.Get("/debug/pprof/trace", pprof.Trace)
	r.Get("/debug/backup", h.serveBackup)
	r.HandleFunc("/ui", h.serveUI)
	r.HandleFunc("/ui/*", h.serveUI)
	r.Get("/explain", func(w http.ResponseWriter, r *http.Request) {
		if h.explain == nil {
			writeError(w, errNoSuchResource)
			return
		}
		h.explain.ServeHTTP(w, r)
	})
	r.Get("/debug/pprof/*", func(w http.ResponseWriter, r *http.Request) { pprof.Handler(chi.URLParam(r, "*")).ServeHTTP(w, r) })
	r.Get("/openapi/v2", h.serveOpenAPIv2)
	r.Get("/openapi/v3", h.serveOpenAPI)
	r.Get("/openapi/v3/*", h.serveOpenAPI)
	for _, p := range []string{"/api", "/apis", "/apis/{group}"} {
		r.Get(p, h.discovery)
	}
	for _, gv := range []string{"/api/{version}", "/apis/{group}/{version}"} {
		r.Route(gv, func(r chi.Router) {
			r.Get("/", h.discovery)
			r.HandleFunc("/namespaces/{namespace}/{resource}/{name}/proxy", h.serveProxy)
			r.HandleFunc("/namespaces/{namespace}/{resource}/{name}/proxy/*", h.serveProxy)
			r.HandleFunc("/{resource}/{name}/proxy", h.serveNodeProxy)
			r.HandleFunc("/{resource}/{name}/proxy/*", h.serveNodeProxy)
			for _, p := range []string{"/{resource}", "/{resource}/{name}", "/{resource}/{name}/{subresource}",
				"/namespaces/{namespace}/{resource}", "/namespaces/{namespace}/{resource}/{name}", "/namespaces/{namespace}/{resource}/{name}/{subresource}"} {
				r.HandleFunc(p, h.serveResourcePath)
			}
		})
	}
	return r
}

// serveResourcePath finds the resource a path names and serves it. A namespace's own
// subresources (namespaces/{name}/status, /finalize) share the shape of a namespaced
// resource's list and are told apart by the registry.
func (h *handler) serveResourcePath(w http.ResponseWriter, r *http.Request) {
	p := func(k string) string { return chi.URLParam(r, k) }
	group, version, ns, plural, name, sub := p("group"), p("version"), p("namespace"), p("resource"), p("name"), p("subresource")
	if ns != "" {
		if res := h.api.reg.Lookup(group, plural); res == nil || !res.Namespaced {
			if name != "" {
				writeError(w, errNoSuchResource)
				return
			}
			ns, plural, name, sub = "", "namespaces", ns, plural
		}
	}
	req := &request{res: h.api.reg.Lookup(group, plural), ns: ns, name: name, sub: sub}
	switch {
	case req.res == nil || req.res.Version != version:
		writeError(w, errNoSuchResource)
	case sub != "" && !req.res.HasSubresource(sub):
		writeError(w, errNoSuchResource)
	case req.res.Namespaced && name != "" && ns == "":
		writeError(w, errNoSuchResource)
	default:
		h.serveResource(w, r, req)
	}
}

// recoverPanics answers a handler's panic with a 500 Status instead of a dropped
// connection, and logs it.
func (h *handler) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				h.api.log.Error("panic serving request", "path", r.URL.Path, "err", v)
				writeError(w, apierrors.NewInternalError(fmt.Errorf("%v", v)))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// closeWhenStopping makes every answer of a stopping server close its connection, so
// clients stop sending on kept-alive connections before those are closed.
func (h *handler) closeWhenStopping(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.isStopping() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) isStopping() bool {
	select {
	case <-h.stopping:
		return true
	default:
		return false
	}
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-h.ready:
		if h.isStopping() {
			http.Error(w, "[-]shutdown failed: the server is stopping", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	default:
		http.Error(w, "[-]boot-objects failed: not finished", http.StatusInternalServerError)
	}
}

func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if h.metrics == nil {
		writeError(w, apierrors.NewNotFound(schema.GroupResource{}, "metrics"))
		return
	}
	h.metrics.ServeHTTP(w, r)
}

// serveBackup streams a consistent copy of the database (minicluster backup), behind
// the token like everything under /debug.
func (h *handler) serveBackup(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := h.api.store.Backup(w); err != nil {
		h.api.log.Error("backup", "err", err) // the status line is sent: the copy is cut short
	}
}

// serveUI serves the topology page; POST /ui/login-codes (the token's holder only)
// gives a one-time login link for a browser.
func (h *handler) serveUI(w http.ResponseWriter, r *http.Request) {
	switch {
	case h.ui == nil:
		writeError(w, errNoSuchResource)
	case r.URL.Path == "/ui/login-codes" && r.Method == http.MethodPost:
		writeJSONValue(w, map[string]string{"path": "/ui/login?code=" + h.ui.NewLoginCode()})
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{}, strings.ToLower(r.Method)))
	default:
		h.ui.ServeHTTP(w, r)
	}
}
