package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/apiserver/apitest"
	"github.com/minicluster/minicluster/store"
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

func newAPI(t *testing.T) *apiserver.API { return apitest.NewAPI(t) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The proxy follows the store through its watches and programs diffs; a failed apply
// is followed by a full one. The scripts it ran, replayed in order into the tracer,
// route as the objects say.
func TestProxyFollowsTheStore(t *testing.T) {
	api := newAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := &fakeRunner{}
	p, err := New(Config{API: api, Instance: "mc", Mode: ModeNFTables, NodeName: "node1",
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), Runner: run, Conntrack: func([]StaleFlow) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)
	reg := api.Registry()
	s := svc("web", "10.96.0.40", 80, tcp)
	if _, err := api.Create(ctx, reg.Lookup("", "services"), "default", s, false); err != nil {
		t.Fatal(err)
	}
	trace := func() string {
		return parseNFT(t, strings.Join(run.scripts("nft"), ""), tracer{t: t}).trace(packet{src: "10.244.0.100", dst: "10.96.0.40", proto: "tcp", port: 80})
	}
	waitFor(t, "the new service to be rejected", func() bool { return len(run.scripts("nft")) > 0 && trace() == "reject" })
	if !strings.HasPrefix(run.scripts("nft")[0], "table ip mc_proxy {}\ndelete table ip mc_proxy\n") {
		t.Error("the first sync must replace the whole table")
	}
	sl := slice("web", 8080, tcp, ready("10.244.0.2"), ready("10.244.0.3"))
	sl.Name = ""
	sl.GenerateName = "web-"
	created, err := api.Create(ctx, reg.Lookup("discovery.k8s.io", "endpointslices"), "default", sl, false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "endpoints to be routed", func() bool { return trace() == "dnat 10.244.0.2:8080 | dnat 10.244.0.3:8080" })
	last := run.scripts("nft")[len(run.scripts("nft"))-1]
	if strings.Contains(last, "table ip") || strings.Contains(last, "10.96.0.1 ") {
		t.Errorf("a change must be applied as a diff touching only what changed:\n%s", last)
	}

	run.mu.Lock()
	run.fail = 1
	run.mu.Unlock()
	mutate := func(o store.Object) (store.Object, error) {
		o.(*discoveryv1.EndpointSlice).Endpoints[1].Conditions.Ready = ptrBool(false)
		return o, nil
	}
	if _, err := api.Update(ctx, reg.Lookup("discovery.k8s.io", "endpointslices"), "default", created.GetName(), "", mutate, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unready endpoint to leave, after a retried full sync", func() bool {
		ss := run.scripts("nft")
		return strings.HasPrefix(ss[len(ss)-1], "table ip mc_proxy {}") && trace() == "dnat 10.244.0.2:8080"
	})
	if err := func() error {
		_, _, err := api.Delete(ctx, reg.Lookup("", "services"), "default", "web", metav1.DeleteOptions{})
		return err
	}(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted service's address to be unallocated", func() bool { return trace() == "drop" })
}

func ptrBool(b bool) *bool { return &b }

// In iptables mode the first sync puts the jumps into the built-in chains and writes
// every chain of ours; later ones only what changed.
func TestProxyIPTablesSyncs(t *testing.T) {
	api := newAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := &fakeRunner{}
	p, err := New(Config{API: api, Instance: "mc", NodeName: "node1", ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		Runner: run, Conntrack: func([]StaleFlow) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)
	reg := api.Registry()
	if _, err := api.Create(ctx, reg.Lookup("", "services"), "default", svc("web", "10.96.0.40", 80, tcp), false); err != nil {
		t.Fatal(err)
	}
	trace := func(dst string) string {
		return parseIPT(t, "mc", strings.Join(run.scripts("iptables-restore"), ""), tracer{t: t}).trace(packet{src: "10.244.0.100", dst: dst, proto: "tcp", port: 80})
	}
	waitFor(t, "the service to be rejected", func() bool { return len(run.scripts("iptables-restore")) > 0 && trace("10.96.0.40") == "reject" })
	sl := slice("web", 8080, tcp, ready("10.244.0.2"))
	if _, err := api.Create(ctx, reg.Lookup("discovery.k8s.io", "endpointslices"), "default", sl, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the endpoint to be routed", func() bool { return trace("10.96.0.40") == "dnat 10.244.0.2:8080" })
	if got := trace("10.96.0.1"); got != "reject" {
		t.Errorf("the kubernetes service (no endpoints here) %s", got)
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
