package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/controllers"
	clusterdns "github.com/minicluster/minicluster/dns"
	"github.com/minicluster/minicluster/explain"
	"github.com/minicluster/minicluster/node"
	"github.com/minicluster/minicluster/node/runtime"
	"github.com/minicluster/minicluster/node/sandbox"
	"github.com/minicluster/minicluster/proxy"
	"github.com/minicluster/minicluster/store"
	"github.com/minicluster/minicluster/ui"
)

// DefaultDataDir is where the daemon keeps its state.
const DefaultDataDir = "/var/lib/minicluster"

type serveConfig struct {
	dataDir, instance, listen, clusterDomain, logLevel, nodeName string
	serviceCIDR, podCIDR                                         netip.Prefix
	clusterDNS                                                   netip.Addr
	proxyMode                                                    string
	proxySyncPeriod, dnsTTL                                      time.Duration
	dnsUpstreams                                                 []string
	dnsForwardFor                                                []netip.Prefix
	insecureRegistries                                           []string
	imageGCHigh, imageGCLow                                      int
	maxEndpointsPerSlice, maxWatches, maxInFlight, maxMutating   int
}

var instanceName = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &serveConfig{}
	var svc, pod string
	fs.StringVar(&c.dataDir, "data-dir", DefaultDataDir, "directory for the database, credentials and kubeconfig")
	fs.StringVar(&c.instance, "instance", "mc", "name prefixing everything the daemon creates (bridge, netns, rules)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:6443", "HTTPS address of the API (bearer token required)")
	fs.StringVar(&svc, "service-cidr", "10.96.0.0/12", "range for ClusterIPs")
	fs.StringVar(&pod, "pod-cidr", "10.244.0.0/16", "range for pod IPs")
	fs.StringVar(&c.clusterDomain, "cluster-domain", "cluster.local", "DNS domain of the cluster")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	host, _ := os.Hostname()
	fs.StringVar(&c.nodeName, "node-name", strings.ToLower(host), "name of this node")
	fs.StringVar(&c.proxyMode, "proxy-mode", proxy.ModeIPTables, "how services are programmed into the kernel: iptables or nftables")
	fs.DurationVar(&c.proxySyncPeriod, "proxy-sync-period", 30*time.Second, "how often the proxy checks its rules are still in the kernel (and repairs them)")
	fs.IntVar(&c.maxEndpointsPerSlice, "max-endpoints-per-slice", 100, "most endpoints one EndpointSlice holds")
	fs.IntVar(&c.maxWatches, "max-watches-per-client", 500, "most watches one client (address, or process on the unix socket) may have open")
	fs.IntVar(&c.maxInFlight, "max-requests-inflight", 400, "most reads served at once, past which a 429 (as kube-apiserver's)")
	fs.IntVar(&c.maxMutating, "max-mutating-requests-inflight", 200, "most writes served at once, past which a 429 (as kube-apiserver's)")
	fs.DurationVar(&c.dnsTTL, "dns-ttl", 5*time.Second, "TTL of cluster DNS answers")
	upstream := fs.String("dns-upstream", "", "comma-separated upstream resolvers (host or host:port) for names outside the cluster domain; default: the host's nameservers, skipping loopback ones; none: no forwarding")
	forwardFor := fs.String("dns-forward-for", "", "comma-separated CIDRs whose clients the cluster DNS also forwards for, besides the pod CIDR, the node and loopback (others get cluster names only: no open resolver)")
	dns := fs.String("cluster-dns", "10.96.0.10", "cluster DNS address written into pods' resolv.conf")
	fs.IntVar(&c.imageGCHigh, "image-gc-high-threshold", 85, "percent of the disk used past which images no container uses are removed")
	fs.IntVar(&c.imageGCLow, "image-gc-low-threshold", 80, "percent of the disk image garbage collection brings the usage under")
	insecure := fs.String("insecure-registries", "", "comma-separated registries (host:port) images are pulled from over plain HTTP, e.g. a local one")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	if c.imageGCLow < 0 || c.imageGCHigh > 100 || c.imageGCLow > c.imageGCHigh {
		return nil, fmt.Errorf("--image-gc-low-threshold %d and --image-gc-high-threshold %d: want 0 ≤ low ≤ high ≤ 100", c.imageGCLow, c.imageGCHigh)
	}
	for _, r := range strings.Split(*insecure, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.insecureRegistries = append(c.insecureRegistries, r)
		}
	}
	if !instanceName.MatchString(c.instance) {
		return nil, fmt.Errorf("--instance %q: must be 1-8 lowercase letters and digits, starting with a letter", c.instance)
	}
	var err error
	if c.serviceCIDR, err = netip.ParsePrefix(svc); err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	if c.podCIDR, err = netip.ParsePrefix(pod); err != nil {
		return nil, fmt.Errorf("--pod-cidr: %w", err)
	}
	if c.clusterDNS, err = netip.ParseAddr(*dns); err != nil || !c.serviceCIDR.Contains(c.clusterDNS) {
		return nil, fmt.Errorf("--cluster-dns %q: must be an address in --service-cidr %s", *dns, c.serviceCIDR)
	}
	if c.serviceCIDR.Overlaps(c.podCIDR) {
		return nil, fmt.Errorf("--service-cidr %s overlaps --pod-cidr %s", c.serviceCIDR, c.podCIDR)
	}
	if c.proxyMode != proxy.ModeIPTables && c.proxyMode != proxy.ModeNFTables {
		return nil, fmt.Errorf("--proxy-mode %q: must be %s or %s", c.proxyMode, proxy.ModeIPTables, proxy.ModeNFTables)
	}
	if c.proxySyncPeriod < 100*time.Millisecond || c.maxEndpointsPerSlice < 1 || c.maxEndpointsPerSlice > 1000 {
		return nil, fmt.Errorf("--proxy-sync-period must be at least 100ms and --max-endpoints-per-slice 1 to 1000")
	}
	switch *upstream {
	case "none":
	case "":
		c.dnsUpstreams = clusterdns.HostUpstreams()
	default:
		for _, u := range strings.Split(*upstream, ",") {
			if _, _, err := net.SplitHostPort(u); err != nil {
				u = net.JoinHostPort(u, "53")
			}
			if _, err := netip.ParseAddrPort(u); err != nil {
				return nil, fmt.Errorf("--dns-upstream %q: want IP or IP:port", u)
			}
			c.dnsUpstreams = append(c.dnsUpstreams, u)
		}
	}
	for _, p := range strings.FieldsFunc(*forwardFor, func(r rune) bool { return r == ',' }) {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("--dns-forward-for %q: want CIDRs such as 192.168.0.0/16", p)
		}
		c.dnsForwardFor = append(c.dnsForwardFor, prefix.Masked())
	}
	if c.dnsTTL < time.Second {
		return nil, fmt.Errorf("--dns-ttl must be at least 1s")
	}
	if c.serviceCIDR.Addr().BitLen()-c.serviceCIDR.Bits() < 5 {
		return nil, fmt.Errorf("--service-cidr %s is too small", c.serviceCIDR)
	}
	return c, nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serve runs the daemon until SIGTERM or SIGINT.
func serve(args []string, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	if err := enterHostMountNamespace(log); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := checkDataDir(cfg.dataDir); err != nil {
		return err
	}
	lock, err := lockDaemon(cfg.instance, cfg.dataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, err := openStore(cfg.dataDir, log)
	if err != nil {
		return err
	}
	defer closeStore(st, cfg.dataDir, log)
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clients, err := newClients(apiserver.SocketPath(cfg.dataDir))
	if err != nil {
		return err
	}
	events := controllers.NewEvents(clients.typed)
	rt, err := runtime.New(runtime.Config{DataDir: cfg.dataDir, InsecureRegistries: cfg.insecureRegistries,
		ImageGCHigh: cfg.imageGCHigh, ImageGCLow: cfg.imageGCLow, Log: log})
	if err != nil {
		return err
	}
	core := clients.informers.Core().V1()
	agent, err := node.New(node.Config{Client: clients.typed, Pods: core.Pods(), Services: core.Services(),
		ConfigMaps: core.ConfigMaps(), Secrets: core.Secrets(), Runtime: rt, DataDir: cfg.dataDir,
		Instance: cfg.instance, NodeName: cfg.nodeName, PodCIDR: cfg.podCIDR, ClusterDNS: cfg.clusterDNS, ClusterDomain: cfg.clusterDomain,
		Version: apiserver.Version, Metrics: metrics, Recorder: events.Recorder("kubelet", cfg.nodeName), Log: log})
	if err != nil {
		return err
	}
	explainer, err := explain.New(explain.Config{Services: core.Services(), Slices: clients.informers.Discovery().V1().EndpointSlices(),
		Pods: core.Pods(), Client: clients.typed, Instance: cfg.instance, ProxyMode: cfg.proxyMode,
		NodeName: cfg.nodeName, ClusterDomain: cfg.clusterDomain, ClusterDNS: cfg.clusterDNS,
		NetnsName: func(ns, pod string) string { return sandbox.NetnsName(cfg.instance, ns, pod) }})
	if err != nil {
		return err
	}
	page, err := ui.New(ui.Config{Services: core.Services(), Slices: clients.informers.Discovery().V1().EndpointSlices(),
		Pods: core.Pods(), ClusterDomain: cfg.clusterDomain, Log: log})
	if err != nil {
		return err
	}
	srv, err := apiserver.New(apiserver.Config{DataDir: cfg.dataDir, Listen: cfg.listen, PodAddr: sandbox.Gateway(cfg.podCIDR), ServiceCIDR: cfg.serviceCIDR,
		ClusterDomain: cfg.clusterDomain, ClusterDNS: cfg.clusterDNS, Store: st, Log: log, Metrics: metrics,
		MaxWatchesPerClient: cfg.maxWatches, MaxRequestsInFlight: cfg.maxInFlight, MaxMutatingRequestsInFlight: cfg.maxMutating, Explain: explainer, UI: page, Logs: rt, Exec: rt, PortForward: agent})
	if err != nil {
		return err
	}
	kubeProxy, err := proxy.New(proxy.Config{Services: core.Services(), Slices: clients.informers.Discovery().V1().EndpointSlices(),
		Instance: cfg.instance, Mode: cfg.proxyMode, NodeName: cfg.nodeName, ServiceCIDR: cfg.serviceCIDR, Bridge: cfg.instance + "0",
		SyncPeriod: cfg.proxySyncPeriod, Metrics: metrics, Log: log})
	if err != nil {
		return err
	}
	dnsServer, err := clusterdns.New(clusterdns.Config{Services: core.Services(), Slices: clients.informers.Discovery().V1().EndpointSlices(),
		Namespaces: core.Namespaces(), Endpoints: clients.typed.CoreV1(), Zone: cfg.clusterDomain, TTL: cfg.dnsTTL,
		Listen: sandbox.Gateway(cfg.podCIDR), Upstreams: cfg.dnsUpstreams,
		Reverse: []netip.Prefix{cfg.serviceCIDR.Masked(), cfg.podCIDR.Masked()}, Clients: append([]netip.Prefix{cfg.podCIDR.Masked()}, cfg.dnsForwardFor...),
		Metrics: metrics, Log: log})
	if err != nil {
		return err
	}
	runners, err := newControllers(clients, events, cfg, log)
	if err != nil {
		return err
	}
	runners = append(runners, events, rt, agent, kubeProxy, dnsServer, explainer, page)
	log.Info("starting", "instance", cfg.instance, "proxyMode", cfg.proxyMode, "dataDir", cfg.dataDir, "serviceCIDR", cfg.serviceCIDR, "podCIDR", cfg.podCIDR)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error {
		// The components start once the API serves, as in k3s, and meet only through it.
		select {
		case <-srv.Ready():
		case <-gctx.Done():
			return nil
		}
		clients.informers.Start(gctx.Done())
		defer clients.informers.Shutdown()
		cg, cctx := errgroup.WithContext(gctx)
		for _, c := range runners {
			cg.Go(func() error { return c.Run(cctx) })
		}
		return cg.Wait()
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

type runner interface{ Run(context.Context) error }

// newControllers builds the controllers and the scheduler over the shared informers.
func newControllers(c *clients, events *controllers.Events, cfg *serveConfig, log *slog.Logger) ([]runner, error) {
	workload := controllers.WorkloadConfig{Client: c.typed, Informers: c.informers, Log: log}
	endpoints := controllers.EndpointsConfig{Client: c.typed, Informers: c.informers, MaxEndpointsPerSlice: cfg.maxEndpointsPerSlice, Log: log}
	slices, err := controllers.NewEndpointSlices(endpoints)
	if err != nil {
		return nil, err
	}
	deploy, rs, rc, ds, sts, job, cronJob := workload, workload, workload, workload, workload, workload, workload
	deploy.Recorder, rs.Recorder = events.Recorder("deployment-controller", ""), events.Recorder("replicaset-controller", "")
	job.Recorder, cronJob.Recorder = events.Recorder("job-controller", ""), events.Recorder("cronjob-controller", "")
	rc.Recorder, ds.Recorder = events.Recorder("replication-controller", ""), events.Recorder("daemonset-controller", "")
	sts.Recorder = events.Recorder("statefulset-controller", "")
	return []runner{
		controllers.NewNamespace(controllers.NamespaceConfig{Client: c.typed, Dynamic: c.dynamic, Informers: c.informers, Log: log}),
		controllers.NewServiceAccounts(controllers.ServiceAccountConfig{Client: c.typed, Informers: c.informers, Log: log}),
		controllers.NewNodeTaints(controllers.NodeTaintConfig{Client: c.typed, Informers: c.informers, Log: log}),
		controllers.NewRootCA(controllers.RootCAConfig{Client: c.typed, Informers: c.informers,
			CAFile: filepath.Join(cfg.dataDir, apiserver.CACertFile), Log: log}),
		controllers.NewVolumes(controllers.VolumeConfig{Client: c.typed, Informers: c.informers, Provisioner: apiserver.LocalPathProvisioner,
			StorageDir: filepath.Join(cfg.dataDir, "storage"), NodeName: cfg.nodeName, Recorder: events.Recorder("persistentvolume-controller", ""), Log: log}),
		controllers.NewDeployment(deploy),
		controllers.NewReplicaSet(rs),
		controllers.NewReplicationController(rc),
		controllers.NewDaemonSet(ds),
		controllers.NewStatefulSet(sts),
		controllers.NewJob(job),
		controllers.NewDisruption(controllers.DisruptionConfig{Client: c.typed, Informers: c.informers, Log: log}),
		controllers.NewCronJob(cronJob),
		controllers.NewGarbageCollector(controllers.GCConfig{Discovery: c.typed.Discovery(), Dynamic: c.dynamic, Informers: c.informers, Log: log}),
		controllers.NewEndpoints(endpoints),
		slices,
		controllers.NewScheduler(controllers.SchedulerConfig{Client: c.typed, Informers: c.informers, NodeName: cfg.nodeName,
			Recorder: events.Recorder("default-scheduler", ""), Log: log}),
	}, nil
}

// cleanup removes what an instance created in the kernel (run it with the daemon stopped).
func cleanup(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	instance := fs.String("instance", "mc", "the instance whose bridge, veths and pod netns to remove")
	dataDir := fs.String("data-dir", DefaultDataDir, "the instance's data dir, to find its container processes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !instanceName.MatchString(*instance) {
		return fmt.Errorf("--instance %q: must be 1-8 lowercase letters and digits, starting with a letter", *instance)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	// The daemon's mount namespace: its memory-backed volumes, and /sys with the cgroups.
	if err := enterHostMountNamespace(log); err != nil {
		return err
	}
	proxy.Cleanup(*instance, nil)
	if err := node.Cleanup(*instance, *dataDir, log); err != nil {
		return err
	}
	removeLock(filepath.Join(lockDir, *instance+".lock"))
	removeLock(filepath.Join(*dataDir, "daemon.lock"))
	return nil
}

// openStore opens the cluster's database and, once it has read whole, refreshes the
// backup beside it (closeStore does again as the daemon stops). A damaged database stops the daemon with where to find that backup.
func openStore(dataDir string, log *slog.Logger) (*store.Store, error) {
	path := filepath.Join(dataDir, dbFile)
	st, err := store.Open(store.Config{Path: path, Log: log})
	if errors.Is(err, store.ErrDamaged) {
		backup := path + store.BackupSuffix
		if _, berr := os.Stat(backup); berr == nil {
			return nil, fmt.Errorf("%w; restore from the backup at %s (taken when the daemon last started or stopped): minicluster restore --data-dir %s %s",
				err, backup, dataDir, backup)
		}
		return nil, fmt.Errorf("%w; there is no backup at %s: move the file away to start an empty cluster", err, backup)
	}
	if err != nil {
		return nil, err
	}
	if st.Rev() > 0 {
		if err := st.BackupFile(path + store.BackupSuffix); err != nil {
			st.Close()
			return nil, fmt.Errorf("back up the database: %w", err)
		}
	}
	return st, nil
}

// closeStore refreshes the backup and closes the database, as the daemon stops.
func closeStore(st *store.Store, dataDir string, log *slog.Logger) {
	if err := st.BackupFile(filepath.Join(dataDir, dbFile) + store.BackupSuffix); err != nil {
		log.Error("back up the database", "err", err)
	}
	st.Close()
}

// checkParents refuses a data dir whose parent directories another user could change:
// who can rename a parent can put another dir, with their own token, in the data dir's
// place. Each parent must be root's or the daemon user's, and writable by group or
// others only with the sticky bit (as /tmp).
func checkParents(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case st != nil && st.Uid != 0 && int(st.Uid) != os.Geteuid():
			return fmt.Errorf("unsafe data dir: its parent %s is owned by uid %d; choose a --data-dir whose parents are root's", p, st.Uid)
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0:
			return fmt.Errorf("unsafe data dir: its parent %s is writable by group or others (%s) without the sticky bit; chmod go-w it or choose another --data-dir", p, fi.Mode())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// dbFile is the database's file in the data dir.
const dbFile = "minicluster.db"

// checkDataDir refuses a data dir that others could read or change: it holds the CA key
// and the token, and whoever has them has the API, which is root on this host. The dir
// and everything directly in it must be the daemon user's and closed to group and others.
func checkDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := checkParents(dir); err != nil {
		return err
	}
	paths := []string{dir}
	for _, e := range entries {
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case st != nil && int(st.Uid) != os.Geteuid():
			return fmt.Errorf("unsafe data dir: %s is owned by uid %d, not %d (who runs the daemon); chown it or choose another --data-dir", p, st.Uid, os.Geteuid())
		case fi.Mode().Perm()&0o077 != 0:
			return fmt.Errorf("unsafe data dir: %s is open to group or others (%s); chmod go-rwx it or choose another --data-dir", p, fi.Mode())
		}
	}
	return nil
}
