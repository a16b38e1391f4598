package apiserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/apimachinery/pkg/version"

	"github.com/minicluster/minicluster/store"
)

// Version is minicluster's own version, reported in /version's gitVersion.
var Version = "v0.1.0"

// Config configures the API server.
type Config struct {
	DataDir string
	Listen  string // host:port for HTTPS
	// PodAddr, if valid, is an address pods reach (the node bridge's): the API listens
	// there too, on Listen's port, token required, and it is the kubernetes service's
	// endpoint. It need not exist yet when the server starts.
	PodAddr       netip.Addr
	ServiceCIDR   netip.Prefix
	ClusterDomain string
	// ClusterDNS is the kube-dns service's ClusterIP (none when invalid).
	ClusterDNS    netip.Addr
	NodePortBase  int
	NodePortCount int
	Store         *store.Store
	Log           *slog.Logger
	// ShutdownTimeout bounds a graceful stop (default 10 s).
	ShutdownTimeout time.Duration
	// Metrics is served at /metrics (token required on TCP, as in Kubernetes); the
	// server adds its own (open watches) to it.
	Metrics *prometheus.Registry
	// MaxWatchesPerClient caps one client's open watches (default 500): a client
	// opening them without end cannot exhaust the daemon.
	MaxWatchesPerClient int
	// MaxRequestsInFlight and MaxMutatingRequestsInFlight bound the reads and writes
	// served at once (defaults 400 and 200, kube-apiserver's); past them a 429.
	MaxRequestsInFlight, MaxMutatingRequestsInFlight int
	// Logs, Exec and PortForward serve pods/log, exec, attach and portforward, as a
	// kubelet does for kube-apiserver; without them those answer 503.
	Logs        PodLogs
	Exec        PodExec
	PortForward PodPortForwarder
	// Explain serves /explain (minicluster explain) behind the token; nil: 404.
	Explain http.Handler
	// UI serves /ui/ (the topology page); its sessions may GET the page, its events and
	// /explain without the token. nil: 404.
	UI UI
	// EventTTL is how long an event is kept after it last happened (default one hour,
	// kube-apiserver's --event-ttl).
	EventTTL time.Duration
}

// UI is the topology page's server, with the sessions it hands out.
type UI interface {
	http.Handler
	Authorized(r *http.Request) bool
	NewLoginCode() string
}

// Server is the API server component.
type Server struct {
	cfg     Config
	api     *API
	handler *handler
	ready   chan struct{}
}

// New builds a server; nothing listens until Run.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("apiserver: no store")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.NodePortCount == 0 {
		cfg.NodePortBase, cfg.NodePortCount = 30000, 2768
	}
	if !cfg.ServiceCIDR.IsValid() {
		return nil, errors.New("apiserver: no service CIDR")
	}
	reg := NewRegistry(&Allocator{ServiceCIDR: cfg.ServiceCIDR.Masked(), NodePortBase: cfg.NodePortBase, NodePortCount: cfg.NodePortCount})
	api := NewAPI(cfg.Store, reg, cfg.Log)
	api.tokens = &tokenIssuer{dir: cfg.DataDir, issuer: "https://kubernetes.default.svc." + cfg.ClusterDomain}
	if cfg.EventTTL <= 0 {
		cfg.EventTTL = DefaultEventTTL
	}
	if cfg.MaxWatchesPerClient <= 0 { // unset
		cfg.MaxWatchesPerClient = 500
	}
	if cfg.MaxRequestsInFlight <= 0 {
		cfg.MaxRequestsInFlight = 400
	}
	if cfg.MaxMutatingRequestsInFlight <= 0 {
		cfg.MaxMutatingRequestsInFlight = 200
	}
	s := &Server{cfg: cfg, api: api, ready: make(chan struct{})}
	s.handler = &handler{api: api, ready: s.ready, stopping: make(chan struct{}), logs: cfg.Logs, exec: cfg.Exec, portForward: cfg.PortForward, explain: cfg.Explain, ui: cfg.UI,
		watches:  &watchLimiter{max: cfg.MaxWatchesPerClient, open: map[string]int{}},
		inFlight: newInFlight(cfg.MaxRequestsInFlight, cfg.MaxMutatingRequestsInFlight)}
	s.handler.watching = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "apiserver_longrunning_requests",
		Help: "Watches open now, as kube-apiserver's gauge of long-running requests counts them."},
		[]string{"verb", "group", "version", "resource", "scope"}).MustCurryWith(prometheus.Labels{"verb": "WATCH"})
	s.handler.router = s.handler.routes()
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.handler.watching); err != nil {
			return nil, err
		}
		s.handler.metrics = promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{})
	}
	return s, nil
}

// API returns the in-process API for other components.
func (s *Server) API() *API { return s.api }

// Ready is closed once the store is open, the boot objects exist and both listeners serve.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Handler returns the HTTP handler without authentication (as served on the unix socket).
func (s *Server) Handler() http.Handler { return s.handler }

// SocketPath is where the root-only plain HTTP socket lives.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "api.sock") }

// Run creates credentials and boot objects, then serves HTTPS (token required) and the
// unix socket until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	creds, err := ensureCredentials(s.cfg)
	if err != nil {
		return err
	}
	if err := s.Boot(ctx); err != nil {
		return fmt.Errorf("boot objects: %w", err)
	}
	unixLn, err := listenUnix(SocketPath(s.cfg.DataDir))
	if err != nil {
		return err
	}
	tcpLn, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		unixLn.Close()
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{creds.cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	authenticated := s.Authenticate(creds.token, s.handler)
	servers := []*http.Server{s.httpServer(s.handler), s.httpServer(authenticated)}
	listeners := []net.Listener{unixLn, tls.NewListener(tcpLn, tlsConfig)}
	if podAddr := s.podListen(); podAddr != "" {
		podLn, err := listenFreebind(ctx, podAddr)
		if err != nil {
			unixLn.Close()
			tcpLn.Close()
			return fmt.Errorf("listen %s: %w", podAddr, err)
		}
		servers = append(servers, s.httpServer(authenticated))
		listeners = append(listeners, tls.NewListener(podLn, tlsConfig))
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := range servers {
		srv, ln := servers[i], listeners[i]
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		s.expireEvents(gctx, s.cfg.EventTTL)
		return nil
	})
	close(s.ready)
	s.cfg.Log.Info("api server ready", "listen", tcpLn.Addr().String(), "socket", SocketPath(s.cfg.DataDir))
	g.Go(func() error {
		<-gctx.Done()
		return s.shutdown(servers)
	})
	return g.Wait()
}

// podListen is the address pods reach the API at, when it is not covered by Listen.
func (s *Server) podListen() string {
	host, port, err := net.SplitHostPort(s.cfg.Listen)
	if ip := net.ParseIP(host); !s.cfg.PodAddr.IsValid() || err != nil || ip != nil && (ip.IsUnspecified() || ip.Equal(s.cfg.PodAddr.AsSlice())) {
		return ""
	}
	return net.JoinHostPort(s.cfg.PodAddr.String(), port)
}

// listenFreebind listens on an address that may not exist yet (the bridge is made by
// the node agent, after the API serves).
func listenFreebind(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, unix.IP_FREEBIND, 1) })
		return errors.Join(err, serr)
	}}
	return lc.Listen(ctx, "tcp", addr)
}

// headerTimeout is how long a client has to send a request's headers: one that
// trickles them (slowloris) is cut off.
var headerTimeout = 10 * time.Second

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
		ConnContext: peerContext}
}

type peerKey struct{}

// peerContext notes which process is at the other end of a unix socket connection, so
// that limits per client apply to each process there, not to all of them as one.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, fmt.Sprintf("pid %d on the unix socket", cred.Pid))
}

// shutdown ends watches first (they never finish on their own), then waits for
// in-flight requests up to the timeout.
func (s *Server) shutdown(servers []*http.Server) error {
	// First a moment in which every answer closes its connection (and /readyz fails),
	// so clients stop sending on kept-alive connections; only then are idle connections
	// closed. Closing them at once would cut a request a client had just sent on one.
	// The socket's name goes first: new clients find none, while those already queued
	// are still accepted (closing a listener resets its queue).
	close(s.handler.stopping)
	os.Remove(SocketPath(s.cfg.DataDir))
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	select {
	case <-time.After(min(shutdownDrain, s.cfg.ShutdownTimeout/2)):
	case <-ctx.Done():
	}
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
	os.Remove(SocketPath(s.cfg.DataDir))
	return nil
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	// Create the socket already private: no window where another user could connect.
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// publicPaths answer without a token, as in Kubernetes' default RBAC for anonymous.
var publicPaths = map[string]bool{"/healthz": true, "/livez": true, "/readyz": true, "/version": true}

// RequireToken wraps next so that only requests bearing token get in, except the
// health and version paths.
func RequireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !publicPaths[strings.TrimSuffix(r.URL.Path, "/")] &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		next.ServeHTTP(w, withIdentity(r, adminUser))
	})
}

// handler routes every API path.
type handler struct {
	api         *API
	ready       chan struct{}
	stopping    chan struct{}
	openapi     openAPI
	openapiV2   openAPIv2
	logs        PodLogs
	exec        PodExec
	portForward PodPortForwarder
	metrics     http.Handler
	watches     *watchLimiter
	inFlight    *inFlight
	explain     http.Handler
	ui          UI
	watching    *prometheus.GaugeVec // open watches by resource
	router      http.Handler
}

// shutdownDrain is how long a stopping server keeps answering with Connection: close
// before it closes idle connections.
var shutdownDrain = time.Second

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.router.ServeHTTP(w, r) }

func versionInfo() version.Info {
	return version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-minicluster." + strings.TrimPrefix(Version, "v"),
		GoVersion: runtime.Version(), Compiler: runtime.Compiler, Platform: runtime.GOOS + "/" + runtime.GOARCH}
}
