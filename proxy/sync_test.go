package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/minicluster/minicluster/index"
)

// fakeRunner records what the proxy would run and can fail the next applies.
type fakeRunner struct {
	mu     sync.Mutex
	calls  [][]string // stdin, name, args...
	fail   int
	failed map[int]bool
}

func (f *fakeRunner) Run(stdin, name string, args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]string{stdin, name}, args...))
	if f.fail > 0 && (name == "nft" || name == "iptables-restore") {
		f.fail--
		if f.failed == nil {
			f.failed = map[int]bool{}
		}
		f.failed[len(f.calls)-1] = true
		return "", errors.New("injected failure")
	}
	return "", nil
}

// scripts returns the stdin of every successful apply by name, in order.
func (f *fakeRunner) scripts(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for i, c := range f.calls {
		if c[1] == name && c[0] != "" && !f.failed[i] {
			out = append(out, c[0])
		}
	}
	return out
}

// fakeCluster is the proxy's informers, not started: tests fill their indexers and call
// the handlers the way a running informer would.
type fakeCluster struct {
	t        *testing.T
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
}

// newTestProxy builds a proxy in mode over fake informers, recording its runs in run.
func newTestProxy(t *testing.T, mode string, run *fakeRunner) (*Proxy, *fakeCluster) {
	t.Helper()
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	p, err := New(Config{Services: f.Core().V1().Services(), Slices: f.Discovery().V1().EndpointSlices(), Instance: "mc", Mode: mode,
		NodeName: "node1", ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), Runner: run, Conntrack: func([]StaleFlow) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return p, &fakeCluster{t: t, services: f.Core().V1().Services().Informer(), slices: f.Discovery().V1().EndpointSlices().Informer()}
}

// set stores obj in its informer's cache and marks its service dirty, as an informer
// delivering the change does.
func (c *fakeCluster) set(p *Proxy, obj metav1.Object) {
	c.t.Helper()
	inf := c.services
	if _, ok := obj.(*discoveryv1.EndpointSlice); ok {
		inf = c.slices
	}
	if err := inf.GetIndexer().Update(obj); err != nil {
		c.t.Fatal(err)
	}
	index.OnService(p.markDirty).OnAdd(obj, false)
}

// remove deletes obj from its informer's cache, marking its service dirty.
func (c *fakeCluster) remove(p *Proxy, obj metav1.Object) {
	c.t.Helper()
	inf := c.services
	if _, ok := obj.(*discoveryv1.EndpointSlice); ok {
		inf = c.slices
	}
	if err := inf.GetIndexer().Delete(obj); err != nil {
		c.t.Fatal(err)
	}
	index.OnService(p.markDirty).OnDelete(obj)
}

// The proxy programs the changes its informers deliver as diffs; a failed apply is
// followed by a full one. The scripts it ran, replayed in order into the tracer, route
// as the objects say.
func TestProxyFollowsTheCluster(t *testing.T) {
	run := &fakeRunner{}
	p, c := newTestProxy(t, ModeNFTables, run)
	trace := func() string {
		return parseNFT(t, strings.Join(run.scripts("nft"), ""), tracer{t: t}).trace(packet{src: "10.244.0.100", dst: "10.96.0.40", proto: "tcp", port: 80})
	}
	sync := func(what string) {
		t.Helper()
		if err := p.sync(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	c.set(p, svc("web", "10.96.0.40", 80, tcp))
	sync("the new service")
	if got := trace(); got != "reject" {
		t.Errorf("a service without endpoints: %s, want reject", got)
	}
	if !strings.HasPrefix(run.scripts("nft")[0], "table ip mc_proxy {}\ndelete table ip mc_proxy\n") {
		t.Error("the first sync must replace the whole table")
	}
	sl := slice("web", 8080, tcp, ready("10.244.0.2"), ready("10.244.0.3"))
	c.set(p, sl)
	sync("the new slice")
	if got, want := trace(), "dnat 10.244.0.2:8080 | dnat 10.244.0.3:8080"; got != want {
		t.Errorf("with two ready endpoints: %s, want %s", got, want)
	}
	last := run.scripts("nft")[len(run.scripts("nft"))-1]
	if strings.Contains(last, "table ip") || strings.Contains(last, "10.96.0.1 ") {
		t.Errorf("a change must be applied as a diff touching only what changed:\n%s", last)
	}

	run.mu.Lock()
	run.fail = 1
	run.mu.Unlock()
	sl = sl.DeepCopy()
	sl.Endpoints[1].Conditions.Ready = ptrBool(false)
	c.set(p, sl)
	if err := p.sync(); err == nil {
		t.Fatal("a failed apply must fail the sync")
	}
	sync("the retry")
	ss := run.scripts("nft")
	if !strings.HasPrefix(ss[len(ss)-1], "table ip mc_proxy {}") {
		t.Errorf("the retry after a failed apply must write everything:\n%s", ss[len(ss)-1])
	}
	if got := trace(); got != "dnat 10.244.0.2:8080" {
		t.Errorf("after the endpoint became unready: %s", got)
	}
	c.remove(p, svc("web", "10.96.0.40", 80, tcp))
	sync("the deletion")
	if got := trace(); got != "drop" {
		t.Errorf("the deleted service's address: %s, want drop (unallocated)", got)
	}
}

func ptrBool(b bool) *bool { return &b }

// In iptables mode the first sync puts the jumps into the built-in chains and writes
// every chain of ours; later ones only what changed.
func TestProxyIPTablesSyncs(t *testing.T) {
	run := &fakeRunner{}
	p, c := newTestProxy(t, ModeIPTables, run)
	c.set(p, svc("web", "10.96.0.40", 80, tcp))
	if err := p.sync(); err != nil {
		t.Fatal(err)
	}
	trace := func(dst string) string {
		return parseIPT(t, "mc", strings.Join(run.scripts("iptables-restore"), ""), tracer{t: t}).trace(packet{src: "10.244.0.100", dst: dst, proto: "tcp", port: 80})
	}
	if got := trace("10.96.0.40"); got != "reject" {
		t.Errorf("a service without endpoints: %s, want reject", got)
	}
	c.set(p, slice("web", 8080, tcp, ready("10.244.0.2")))
	if err := p.sync(); err != nil {
		t.Fatal(err)
	}
	if got := trace("10.96.0.40"); got != "dnat 10.244.0.2:8080" {
		t.Errorf("one ready endpoint: %s", got)
	}
	if n := len(run.scripts("iptables-restore")); n != 2 {
		t.Errorf("%d applies for two changes", n)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	var inserted []string
	for _, c := range run.calls {
		if c[1] == "iptables" && len(c) > 5 && c[5] == "-I" {
			inserted = append(inserted, fmt.Sprint(c[2:]))
		}
	}
	if len(inserted) != 0 {
		t.Errorf("the fake says every jump exists already, yet the proxy inserted %v", inserted)
	}
}

// A large full sync in iptables mode goes in parts that, applied in order, give the
// rules one transaction would: each part's jumps lead to chains that exist by then
// (endpoint chains first), the collection chains and the removal of stale chains last.
func TestIPTablesFullSyncInParts(t *testing.T) {
	run := &fakeRunner{}
	p, c := newTestProxy(t, ModeIPTables, run)
	var ips []string
	for i := range 6 {
		name, ip := fmt.Sprintf("s%d", i), fmt.Sprintf("10.96.0.%d", 40+i)
		c.set(p, svc(name, ip, 80, tcp))
		c.set(p, slice(name, 8080, tcp, ready(fmt.Sprintf("10.244.0.%d", 2+i)), ready(fmt.Sprintf("10.244.1.%d", 2+i))))
		ips = append(ips, ip)
	}
	if err := p.sync(); err != nil {
		t.Fatal(err)
	}
	next := p.agg.full(iptBase(p.cfg.Instance, p.cfg.ServiceCIDR.String()))
	stale := []string{"nat/MC-SVC-GONE"}
	whole := iptFullScripts(next, stale, len(next.chains))
	parts := iptFullScripts(next, stale, 3)
	if len(whole) != 1 || len(parts) < 6 { // 6 × (a service's chain and its endpoints'), 3 chains a part, then the rest
		t.Fatalf("%d scripts at once, %d in parts of 3 chains (%d chains)", len(whole), len(parts), len(next.chains))
	}
	declared, jumps := map[string]bool{}, 0
	for i, s := range parts {
		for line := range strings.SplitSeq(s, "\n") {
			if chain, ok := strings.CutPrefix(line, ":"); ok {
				declared[strings.Fields(chain)[0]] = true
			}
		}
		for _, m := range regexp.MustCompile(`-[jg] (MC-[\w-]+)`).FindAllStringSubmatch(s, -1) {
			jumps++
			if !declared[m[1]] {
				t.Errorf("part %d jumps to %s, which no part up to it declares", i, m[1])
			}
		}
	}
	if jumps < 18 { // 6 services: 6 jumps to their chains, 12 to their endpoints'
		t.Errorf("only %d jumps to chains of ours in the parts", jumps)
	}
	if !strings.Contains(parts[len(parts)-1], "-X MC-SVC-GONE") || strings.Contains(strings.Join(parts[:len(parts)-1], ""), "-X ") {
		t.Error("stale chains must go in the last part, and only there")
	}
	for _, ip := range ips {
		pk := packet{src: "10.244.0.100", dst: ip, proto: "tcp", port: 80}
		a := parseIPT(t, "mc", whole[0], tracer{t: t}).trace(pk)
		b := parseIPT(t, "mc", strings.Join(parts, ""), tracer{t: t}).trace(pk)
		if a != b || !strings.HasPrefix(a, "dnat") {
			t.Errorf("%s: %q at once, %q in parts", ip, a, b)
		}
	}
}

// Issue 19 (2): one service's externalIP that is another's ClusterIP. The ClusterIP's
// rules win whatever the order the services came in, in both modes, incremental or
// full; when the ClusterIP's service goes the other takes the address over, and when it
// comes back it wins again. Before, the first to arrive kept the element, and deleting
// it left an element pointing at a deleted chain: every later sync failed.
func TestClusterIPWinsOverExternalIP(t *testing.T) {
	dns := svc("dns", "10.96.0.10", 53, udp)
	dnsPods := slice("dns", 53, udp, ready("10.244.0.5"))
	hijack := svc("hijack", "10.96.0.50", 53, udp, func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"10.96.0.10"} })
	hijackPods := slice("hijack", 5353, udp, ready("10.244.0.9"), ready("10.244.0.8"))
	const own, other = "dnat 10.244.0.5:53", "dnat 10.244.0.8:5353 masq | dnat 10.244.0.9:5353 masq" // external traffic is masqueraded
	to := packet{src: "10.244.0.100", dst: "10.96.0.10", proto: "udp", port: 53}
	for _, mode := range []string{ModeNFTables, ModeIPTables} {
		for _, dnsFirst := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/dns first %v", mode, dnsFirst), func(t *testing.T) {
				run := &fakeRunner{}
				p, c := newTestProxy(t, mode, run)
				trace := func() string {
					if mode == ModeNFTables {
						return parseNFT(t, strings.Join(run.scripts("nft"), ""), tracer{t: t}).trace(to)
					}
					return parseIPT(t, "mc", strings.Join(run.scripts("iptables-restore"), ""), tracer{t: t}).trace(to)
				}
				step := func(what, want string, change func()) {
					t.Helper()
					change()
					if err := p.sync(); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if got := trace(); got != want {
						t.Errorf("%s: 10.96.0.10:53 goes to %s, want %s", what, got, want)
					}
				}
				if dnsFirst {
					step("the ClusterIP's service", own, func() { c.set(p, dns); c.set(p, dnsPods) })
					step("then the externalIP's", own, func() { c.set(p, hijack); c.set(p, hijackPods) })
				} else {
					step("the externalIP's service", other, func() { c.set(p, hijack); c.set(p, hijackPods) })
					step("then the ClusterIP's", own, func() { c.set(p, dns); c.set(p, dnsPods) })
				}
				step("a full sync", own, func() { p.full = true })
				step("the ClusterIP's service deleted", other, func() { c.remove(p, dnsPods); c.remove(p, dns) })
				step("and made again", own, func() { c.set(p, dns); c.set(p, dnsPods) })
				step("the externalIP's service deleted", own, func() { c.remove(p, hijackPods); c.remove(p, hijack) })
				step("a full sync again", own, func() { p.full = true })
			})
		}
	}
}
