// Package ui serves the live topology page at /ui/: namespaces → services →
// endpoints → pods, kept current from the informers over server-sent events, with the
// explain path of any service a click away. Its files are embedded; it needs no build
// step and no JavaScript library.
package ui

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/minicluster/minicluster/index"
)

//go:embed static
var static embed.FS

// Config configures the page.
type Config struct {
	Services      coreinformers.ServiceInformer
	Slices        discoveryinformers.EndpointSliceInformer
	Pods          coreinformers.PodInformer
	ClusterDomain string
	Log           *slog.Logger
}

// UI is the page's server: its files, its event stream and its logins.
type UI struct {
	cfg        Config
	services   corelisters.ServiceLister
	sliceIndex cache.Indexer
	pods       corelisters.PodLister
	synced     []cache.InformerSynced
	files      http.Handler
	page       []byte // index.html with its style and script inlined

	mu       sync.Mutex
	dirty    map[string]bool
	subs     map[chan []byte]bool
	codes    map[string]time.Time // one-time login codes → expiry
	sessions map[string]time.Time // session cookies → expiry
	kick     chan struct{}
}

// Session and code lifetimes.
const (
	codeTTL    = 5 * time.Minute
	sessionTTL = 12 * time.Hour
	cookieName = "minicluster-ui"
)

// New builds the page's server; Run feeds its event stream.
func New(cfg Config) (*UI, error) {
	if cfg.Services == nil || cfg.Slices == nil || cfg.Pods == nil {
		return nil, errors.New("ui: the services, slices and pods informers are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	if err := index.AddSlicesByService(cfg.Slices.Informer()); err != nil {
		return nil, err
	}
	page, err := inlinePage(sub)
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, page: page, services: cfg.Services.Lister(), sliceIndex: cfg.Slices.Informer().GetIndexer(), pods: cfg.Pods.Lister(),
		synced: []cache.InformerSynced{cfg.Services.Informer().HasSynced, cfg.Slices.Informer().HasSynced, cfg.Pods.Informer().HasSynced},
		files:  http.StripPrefix("/ui/", http.FileServerFS(sub)),
		dirty:  map[string]bool{}, subs: map[chan []byte]bool{}, codes: map[string]time.Time{}, sessions: map[string]time.Time{},
		kick: make(chan struct{}, 1)}
	mark := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		switch o := obj.(type) {
		case *corev1.Service:
			u.markDirty(o.Namespace + "/" + o.Name)
		case *discoveryv1.EndpointSlice:
			u.markDirty(o.Namespace + "/" + o.Labels[discoveryv1.LabelServiceName])
		case *corev1.Pod: // its readiness and restarts show under every service selecting it
			svcs, _ := u.services.Services(o.Namespace).List(labels.Everything())
			for _, s := range svcs {
				if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(o.Labels)) {
					u.markDirty(s.Namespace + "/" + s.Name)
				}
			}
		}
	}
	h := cache.ResourceEventHandlerFuncs{AddFunc: mark, UpdateFunc: func(_, o any) { mark(o) }, DeleteFunc: mark}
	for _, inf := range []cache.SharedIndexInformer{cfg.Services.Informer(), cfg.Slices.Informer(), cfg.Pods.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (u *UI) markDirty(key string) {
	u.mu.Lock()
	u.dirty[key] = true
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Run sends what changed to every open page, at most every 50 ms, until ctx ends.
func (u *UI) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), u.synced...) {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			u.mu.Lock()
			for ch := range u.subs {
				close(ch)
				delete(u.subs, ch)
			}
			u.mu.Unlock()
			return nil
		case <-u.kick:
		}
		select { // a burst of changes goes out as one message
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			continue
		}
		u.mu.Lock()
		dirty := u.dirty
		u.dirty = map[string]bool{}
		subscribers := len(u.subs)
		u.mu.Unlock()
		if subscribers == 0 {
			continue
		}
		var views []any
		for _, key := range slices.Sorted(func(yield func(string) bool) {
			for k := range dirty {
				if !yield(k) {
					return
				}
			}
		}) {
			ns, name, _ := strings.Cut(key, "/")
			if s, err := u.services.Services(ns).Get(name); err == nil {
				views = append(views, u.view(s))
			} else {
				views = append(views, map[string]any{"k": key, "gone": true})
			}
		}
		msg := event("update", views)
		u.mu.Lock()
		for ch := range u.subs {
			select {
			case ch <- msg:
			default: // too slow: it reconnects and gets a snapshot
				close(ch)
				delete(u.subs, ch)
			}
		}
		u.mu.Unlock()
	}
}

func event(name string, data any) []byte {
	b, _ := json.Marshal(data)
	return []byte(fmt.Sprintf("event: %s\ndata: %s\n\n", name, b))
}

// serviceView is one service as the page shows it (short keys: the page carries
// thousands of them).
type serviceView struct {
	Key       string         `json:"k"`
	Namespace string         `json:"ns"`
	Name      string         `json:"n"`
	Type      string         `json:"t"`
	IP        string         `json:"ip,omitempty"`
	Ports     []string       `json:"p,omitempty"`
	DNS       string         `json:"dns"`
	Endpoints []endpointView `json:"e,omitempty"`
}

type endpointView struct {
	Address     string `json:"a"`
	Ready       bool   `json:"r,omitempty"`
	Serving     bool   `json:"s,omitempty"`
	Terminating bool   `json:"t,omitempty"`
	Slice       string `json:"sl"`
	Pod         string `json:"pod,omitempty"`
	PodReady    bool   `json:"pr,omitempty"`
	Restarts    int32  `json:"rs,omitempty"`
	Phase       string `json:"ph,omitempty"`
}

func (u *UI) view(s *corev1.Service) serviceView {
	v := serviceView{Key: s.Namespace + "/" + s.Name, Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type),
		IP: s.Spec.ClusterIP, DNS: s.Name + "." + s.Namespace + ".svc." + u.cfg.ClusterDomain}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		v.IP = s.Spec.ExternalName
	}
	for _, p := range s.Spec.Ports {
		txt := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.Name != "" {
			txt = p.Name + " " + txt
		}
		if p.NodePort != 0 {
			txt += fmt.Sprintf(" (node %d)", p.NodePort)
		}
		v.Ports = append(v.Ports, txt+" → "+p.TargetPort.String())
	}
	sls := slices.Clone(index.SlicesOf(u.sliceIndex, s.Namespace, s.Name))
	slices.SortFunc(sls, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	for _, sl := range sls {
		var port string
		if len(sl.Ports) > 0 && sl.Ports[0].Port != nil {
			port = fmt.Sprint(*sl.Ports[0].Port)
		}
		for _, ep := range sl.Endpoints {
			c := ep.Conditions
			e := endpointView{Address: ep.Addresses[0], Slice: sl.Name,
				Ready: c.Ready == nil || *c.Ready, Serving: c.Serving == nil || *c.Serving, Terminating: c.Terminating != nil && *c.Terminating}
			if port != "" {
				e.Address += ":" + port
			}
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
				e.Pod = r.Name
				if pod, err := u.pods.Pods(r.Namespace).Get(r.Name); err == nil {
					e.Phase = string(pod.Status.Phase)
					for _, c := range pod.Status.Conditions {
						if c.Type == corev1.PodReady {
							e.PodReady = c.Status == corev1.ConditionTrue
						}
					}
					for _, cs := range pod.Status.ContainerStatuses {
						e.Restarts += cs.RestartCount
					}
				}
			}
			v.Endpoints = append(v.Endpoints, e)
		}
	}
	return v
}

// ServeHTTP serves the page's files, its event stream (/ui/events) and its login
// (/ui/login?code=…, public: the code is the credential).
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ui/login":
		u.login(w, r)
	case "/ui/events":
		u.events(w, r)
	case "/ui":
		http.Redirect(w, r, "/ui/", http.StatusFound)
	case "/ui/", "/ui/index.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			gz.Write(u.page)
			return
		}
		w.Write(u.page)
	default:
		w.Header().Set("Cache-Control", "no-cache")
		u.files.ServeHTTP(w, r)
	}
}

// events streams a snapshot of every service, then what changes.
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 64)
	u.mu.Lock()
	u.subs[ch] = true
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		if u.subs[ch] {
			delete(u.subs, ch)
			close(ch)
		}
		u.mu.Unlock()
	}()
	all, _ := u.services.List(labels.Everything())
	slices.SortFunc(all, func(a, b *corev1.Service) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	views := make([]serviceView, 0, len(all))
	for _, s := range all {
		views = append(views, u.view(s))
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	var out interface {
		Write([]byte) (int, error)
		Flush() error
	} = nopFlusher{w}
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		out = gz
	}
	send := func(msg []byte) bool {
		if _, err := out.Write(msg); err != nil {
			return false
		}
		out.Flush()
		flusher.Flush()
		return true
	}
	if !send(event("snapshot", views)) {
		return
	}
	for {
		select {
		case msg, ok := <-ch:
			if !ok || !send(msg) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

type nopFlusher struct{ http.ResponseWriter }

func (nopFlusher) Flush() error { return nil }

// NewLoginCode returns a one-time code for /ui/login, valid for five minutes.
func (u *UI) NewLoginCode() string {
	code := randomHex()
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for c, exp := range u.codes {
		if now.After(exp) {
			delete(u.codes, c)
		}
	}
	u.codes[code] = now.Add(codeTTL)
	return code
}

func randomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// login trades a one-time code for a session cookie and goes to the page.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	u.mu.Lock()
	var valid bool
	for c, exp := range u.codes {
		if subtle.ConstantTimeCompare([]byte(c), []byte(code)) == 1 && time.Now().Before(exp) {
			valid = true
			delete(u.codes, c)
		}
	}
	var session string
	if valid {
		session = randomHex()
		u.sessions[session] = time.Now().Add(sessionTTL)
	}
	u.mu.Unlock()
	if !valid {
		http.Error(w, "this login link is not valid (it works once, for five minutes): run minicluster ui for a new one", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: session, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	http.Redirect(w, r, "/ui/", http.StatusFound)
}

// Authorized says whether r carries a live session cookie. The session lets a browser
// read the page, its events and explain paths — GETs only, never the API itself.
func (u *UI) Authorized(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	if err != nil || r.Method != http.MethodGet {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.sessions[c.Value]
	if ok && time.Now().After(exp) {
		delete(u.sessions, c.Value)
		return false
	}
	return ok
}

// inlinePage puts app.css and app.js into index.html: one request, and the page opens
// its event stream as soon as it arrives.
func inlinePage(files fs.FS) ([]byte, error) {
	var parts [3][]byte
	for i, name := range []string{"index.html", "app.css", "app.js"} {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		parts[i] = b
	}
	page := bytes.Replace(parts[0], []byte("/*app.css*/"), parts[1], 1)
	return bytes.Replace(page, []byte("/*app.js*/"), parts[2], 1), nil
}
