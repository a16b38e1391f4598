package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/controllers"
	"github.com/minicluster/minicluster/store"
)

// Runner runs a program with stdin and returns its combined output; tests use a fake.
type Runner interface {
	Run(stdin, name string, args ...string) (string, error)
}

// Exec runs programs on the host.
type Exec struct{}

// Run runs the program.
func (Exec) Run(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Modes the proxy programs the kernel in.
const (
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
)

// Config configures the proxy.
type Config struct {
	API         *apiserver.API
	Instance    string
	Mode        string // ModeIPTables (default) or ModeNFTables
	NodeName    string
	ServiceCIDR netip.Prefix
	// Bridge is the node bridge the service CIDR is routed to; "" leaves routes alone.
	Bridge string
	// SyncPeriod is how often the rules are checked to be still in the kernel
	// (repaired if not); default 30 s.
	SyncPeriod time.Duration
	Runner     Runner
	Metrics    prometheus.Registerer
	// Conntrack deletes stale UDP flows; nil uses netlink.
	Conntrack func([]StaleFlow) error
	Log       *slog.Logger
}

// Proxy programs service routing into the kernel.
type Proxy struct {
	cfg     Config
	trigger chan struct{}
	metrics *metrics

	// Last programmed state; nil forces a full sync.
	nft       *nftState
	ipt       iptState
	ports     []ServicePort
	sliceSeen map[string]string // slice uid → resourceVersion programmed
}

// Table is the proxy's nftables table for an instance.
func Table(instance string) string { return instance + "_proxy" }

// New builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.API == nil || cfg.Instance == "" || !cfg.ServiceCIDR.IsValid() {
		return nil, errors.New("proxy: API, instance and service CIDR are required")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeIPTables
	case ModeIPTables, ModeNFTables:
	default:
		return nil, fmt.Errorf("proxy mode %q: must be %s or %s", cfg.Mode, ModeIPTables, ModeNFTables)
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = 30 * time.Second
	}
	if cfg.Runner == nil {
		cfg.Runner = Exec{}
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = deleteConntrack
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Metrics, cfg.Mode)
	if err != nil {
		return nil, err
	}
	return &Proxy{cfg: cfg, trigger: make(chan struct{}, 1), metrics: m, sliceSeen: map[string]string{}}, nil
}

func (p *Proxy) poke() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Run syncs until ctx is cancelled; the rules stay when it returns. Nothing is
// programmed before services and slices have been listed.
func (p *Proxy) Run(ctx context.Context) error {
	reg := p.cfg.API.Registry()
	for _, r := range []*apiserver.Resource{reg.Lookup("", "services"), reg.Lookup("discovery.k8s.io", "endpointslices")} {
		go controllers.WatchResource(ctx, p.cfg.API, r, p.cfg.Log, func(store.Object) { p.poke() })
	}
	tick := time.NewTicker(p.cfg.SyncPeriod)
	defer tick.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := p.check(); err != nil {
				p.cfg.Log.Warn("proxy rules missing from the kernel; repairing", "mode", p.cfg.Mode, "err", err)
				p.nft, p.ipt = nil, nil
				p.poke()
			}
			continue
		case <-retry.C:
		case <-p.trigger:
		}
		// Let a burst of changes arrive before one sync covers them all.
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
		if err := p.Sync(); err != nil {
			p.cfg.Log.Error("proxy sync failed; retrying in 1s", "err", err)
			p.metrics.errors.Inc()
			retry.Reset(time.Second)
		}
	}
}

// Sync programs the current services and slices: a diff against the last sync, or the
// whole ruleset after a failure or at start.
func (p *Proxy) Sync() error {
	start := time.Now()
	if p.cfg.Bridge != "" {
		if err := p.routeServiceCIDR(); err != nil {
			return err
		}
	}
	reg := p.cfg.API.Registry()
	svcObjs, _, err := p.cfg.API.List(reg.Lookup("", "services"), "", apiserver.Selector{})
	if err != nil {
		return err
	}
	sliceObjs, _, err := p.cfg.API.List(reg.Lookup("discovery.k8s.io", "endpointslices"), "", apiserver.Selector{})
	if err != nil {
		return err
	}
	services := make([]*corev1.Service, len(svcObjs))
	for i, o := range svcObjs {
		services[i] = o.(*corev1.Service)
	}
	slices := make([]*discoveryv1.EndpointSlice, len(sliceObjs))
	for i, o := range sliceObjs {
		slices[i] = o.(*discoveryv1.EndpointSlice)
	}
	ports := Build(p.cfg.NodeName, services, slices)
	full := p.nft == nil && p.ipt == nil
	var rules, elements int
	switch p.cfg.Mode {
	case ModeNFTables:
		next := buildNFT(ports)
		script := nftScript(Table(p.cfg.Instance), p.cfg.ServiceCIDR.String(), p.nft, next)
		if script != "" {
			if _, err := p.cfg.Runner.Run(script, "nft", "-f", "-"); err != nil {
				p.nft = nil
				return err
			}
		}
		p.nft = next
		rules, elements = next.count()
	default:
		next := buildIPT(p.cfg.Instance, p.cfg.ServiceCIDR.String(), ports)
		old := p.ipt
		if old == nil {
			if err := p.ensureJumps(); err != nil {
				return err
			}
			// Whatever chains of ours the kernel has are rewritten or removed.
			if old, err = p.iptExisting(); err != nil {
				return err
			}
		}
		if _, err := p.cfg.Runner.Run(iptScript(old, next), "iptables-restore", "-w", "5", "--noflush"); err != nil {
			p.ipt = nil
			return err
		}
		p.ipt = next
		rules = next.count()
	}
	if stale := StaleUDP(p.ports, ports); len(stale) > 0 {
		if err := p.cfg.Conntrack(stale); err != nil {
			p.cfg.Log.Warn("could not delete stale UDP conntrack entries", "err", err)
		}
	}
	p.ports = ports
	took := time.Since(start)
	p.metrics.observeSync(full, took, rules, elements)
	p.observeProgramming(slices)
	p.cfg.Log.Debug("proxy rules applied", "mode", p.cfg.Mode, "full", full, "services", len(services), "took", took)
	return nil
}

// observeProgramming records, for every slice that changed since the last sync, the
// time from its trigger (the change that caused it) to now, when its rules are in place.
func (p *Proxy) observeProgramming(slices []*discoveryv1.EndpointSlice) {
	now := time.Now()
	seen := make(map[string]string, len(slices))
	for _, s := range slices {
		seen[string(s.UID)] = s.ResourceVersion
		if p.sliceSeen[string(s.UID)] == s.ResourceVersion {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, s.Annotations[corev1.EndpointsLastChangeTriggerTime]); err == nil {
			p.metrics.programming.Observe(now.Sub(t).Seconds())
		}
	}
	p.sliceSeen = seen
}

// check verifies our rules are still in the kernel.
func (p *Proxy) check() error {
	if p.cfg.Mode == ModeNFTables {
		if p.nft == nil {
			return nil
		}
		out, err := p.cfg.Runner.Run("", "nft", "list", "chain", "ip", Table(p.cfg.Instance), "services")
		if err == nil && !strings.Contains(out, "vmap @service-nodeports") {
			err = errors.New("chain services was flushed")
		}
		return err
	}
	if p.ipt == nil {
		return nil
	}
	for _, j := range iptJumps(p.cfg.Instance) {
		args := append([]string{"-w", "5", j[0], j[1], "-C"}, j[2:]...)
		if _, err := p.cfg.Runner.Run("", "iptables", args...); err != nil {
			return err
		}
	}
	chain := iptPrefix(p.cfg.Instance) + "-CLUSTER"
	out, err := p.cfg.Runner.Run("", "iptables", "-w", "5", "-t", "nat", "-S", chain)
	if err == nil && strings.Count(out, "-A "+chain) != len(p.ipt["nat/"+chain]) {
		err = fmt.Errorf("chain %s has lost rules", chain)
	}
	return err
}

// ensureJumps puts the rules leading into our chains into the built-in chains, once.
func (p *Proxy) ensureJumps() error {
	for _, j := range iptJumps(p.cfg.Instance) {
		// The chain must exist before a rule can jump to it; if it does, it is kept as
		// it is (traffic keeps flowing across a restart).
		target := j[len(j)-1]
		if _, err := p.cfg.Runner.Run("", "iptables", "-w", "5", j[0], j[1], "-S", target); err != nil {
			if _, err := p.cfg.Runner.Run("", "iptables", "-w", "5", j[0], j[1], "-N", target); err != nil {
				return err
			}
		}
		check := append([]string{"-w", "5", j[0], j[1], "-C"}, j[2:]...)
		if _, err := p.cfg.Runner.Run("", "iptables", check...); err == nil {
			continue
		}
		insert := append([]string{"-w", "5", j[0], j[1], "-I"}, j[2:]...)
		if _, err := p.cfg.Runner.Run("", "iptables", insert...); err != nil {
			return err
		}
	}
	return nil
}

// iptExisting lists the chains of ours the kernel has now.
func (p *Proxy) iptExisting() (iptState, error) {
	out, err := p.cfg.Runner.Run("", "iptables-save", "-t", "nat")
	if err != nil {
		return nil, err
	}
	filter, err := p.cfg.Runner.Run("", "iptables-save", "-t", "filter")
	if err != nil {
		return nil, err
	}
	return parseIPTChains(out+filter, iptPrefix(p.cfg.Instance)), nil
}

// routeServiceCIDR sends the whole service CIDR to the bridge, so host-originated
// ClusterIP traffic reaches the DNAT and no ClusterIP packet leaves by the default route.
func (p *Proxy) routeServiceCIDR() error {
	br, err := netlink.LinkByName(p.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", p.cfg.Bridge, err)
	}
	pfx := p.cfg.ServiceCIDR.Masked()
	dst := &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: dst})
}

// Cleanup removes the instance's rules in both modes (the route goes with the bridge).
func Cleanup(instance string, r Runner) {
	if r == nil {
		r = Exec{}
	}
	r.Run("", "nft", "delete", "table", "ip", Table(instance))
	if _, err := r.Run("", "iptables", "--version"); err != nil {
		return
	}
	for _, j := range iptJumps(instance) {
		del := append([]string{"-w", "5", j[0], j[1], "-D"}, j[2:]...)
		for range 10 { // duplicates, if any
			if _, err := r.Run("", "iptables", del...); err != nil {
				break
			}
		}
	}
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		out, err := r.Run("", "iptables-save", "-t", table)
		if err != nil {
			continue
		}
		chains := parseIPTChains(out, iptPrefix(instance))
		if len(chains) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, k := range sortedKeys(chains) {
			fmt.Fprintf(&b, ":%s - [0:0]\n", strings.TrimPrefix(k, table+"/"))
		}
		for _, k := range sortedKeys(chains) {
			fmt.Fprintf(&b, "-X %s\n", strings.TrimPrefix(k, table+"/"))
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() > 0 {
		r.Run(b.String(), "iptables-restore", "-w", "5", "--noflush")
	}
}
