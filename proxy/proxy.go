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

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/controllers"
	"github.com/minicluster/minicluster/store"

	"github.com/vishvananda/netlink"
)

// Runner applies a ruleset; tests use a fake.
type Runner interface {
	Apply(script string) error
}

// NFT applies scripts with `nft -f -`, one transaction each.
type NFT struct{}

// Apply runs the script.
func (NFT) Apply(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Config configures the proxy.
type Config struct {
	API         *apiserver.API
	Instance    string
	ServiceCIDR netip.Prefix
	// Bridge is the node bridge the service CIDR is routed to.
	Bridge string
	Runner Runner
	Log    *slog.Logger
}

// Proxy programs ClusterIP routing into the kernel.
type Proxy struct {
	cfg     Config
	trigger chan struct{}
	last    string
}

// Table is the proxy's nftables table for an instance.
func Table(instance string) string { return instance + "_proxy" }

// resync is how often the ruleset is re-applied even without changes, repairing a
// table someone flushed.
const resync = 30 * time.Second

// New builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.API == nil || cfg.Instance == "" || !cfg.ServiceCIDR.IsValid() {
		return nil, errors.New("proxy: API, instance and service CIDR are required")
	}
	if cfg.Runner == nil {
		cfg.Runner = NFT{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{cfg: cfg, trigger: make(chan struct{}, 1)}, nil
}

func (p *Proxy) poke() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Run syncs until ctx is cancelled; the rules stay when it returns.
func (p *Proxy) Run(ctx context.Context) error {
	reg := p.cfg.API.Registry()
	for _, r := range []*apiserver.Resource{reg.Lookup("", "services"), reg.Lookup("discovery.k8s.io", "endpointslices")} {
		go controllers.WatchResource(ctx, p.cfg.API, r, p.cfg.Log, func(store.Object) { p.poke() })
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			p.last = "" // re-apply: repairs a flushed table
		case <-p.trigger:
		}
		// Let a burst of changes arrive before one sync covers them all.
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
		if err := p.sync(); err != nil {
			p.cfg.Log.Error("proxy sync failed; retrying", "err", err)
			time.AfterFunc(time.Second, p.poke)
		}
	}
}

func (p *Proxy) sync() error {
	if err := p.routeServiceCIDR(); err != nil {
		return err
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
	script := RenderNFT(Table(p.cfg.Instance), p.cfg.ServiceCIDR.String(), Build(services, slices))
	if script == p.last {
		return nil
	}
	start := time.Now()
	if err := p.cfg.Runner.Apply(script); err != nil {
		return err
	}
	p.last = script
	p.cfg.Log.Debug("proxy rules applied", "services", len(services), "took", time.Since(start))
	return nil
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

// Cleanup removes the instance's proxy table (the route goes with the bridge).
func Cleanup(instance string) {
	exec.Command("nft", "delete", "table", "ip", Table(instance)).Run()
}
