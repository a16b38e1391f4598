package dns

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/controllers"
	"github.com/minicluster/minicluster/store"
)

// Source is what the answers are computed from. The daemon's is a set of watch-fed
// caches; tests use a fixed one.
type Source interface {
	Synced() bool
	Namespace(name string) bool
	Service(ns, name string) *corev1.Service
	Slices(ns, service string) []*discoveryv1.EndpointSlice
	// PTR returns the names an address reverses to (FQDNs without the zone).
	PTR(ip netip.Addr) []string
}

// Index is the daemon's Source: the controllers' shared caches of services,
// endpointslices and namespaces, plus a reverse map kept from their changes.
type Index struct {
	services, slices, namespaces *controllers.Cache
	synced                       atomic.Bool

	mu      sync.RWMutex
	reverse map[netip.Addr]map[string]int // address → name → how many records give it
	contrib map[string][]ptrRecord        // service key → its records
}

type ptrRecord struct {
	ip   netip.Addr
	name string
}

// NewIndex builds the index over inf's caches; it fills as they do.
func NewIndex(api *apiserver.API, inf *controllers.Informers) *Index {
	reg := api.Registry()
	x := &Index{services: inf.For(reg.Lookup("", "services")), slices: inf.For(reg.Lookup("discovery.k8s.io", "endpointslices")),
		namespaces: inf.For(reg.Lookup("", "namespaces")),
		reverse:    map[netip.Addr]map[string]int{}, contrib: map[string][]ptrRecord{}}
	x.slices.IndexLabel(discoveryv1.LabelServiceName)
	x.services.OnChange(func(o store.Object) { x.refresh(o.GetNamespace(), o.GetName()) })
	x.slices.OnChange(func(o store.Object) {
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
			x.refresh(o.GetNamespace(), name)
		}
	})
	return x
}

// Run marks the index synced once every cache has its first list.
func (x *Index) Run(ctx context.Context) error {
	if x.services.WaitSynced(ctx) && x.slices.WaitSynced(ctx) && x.namespaces.WaitSynced(ctx) {
		x.synced.Store(true)
	}
	<-ctx.Done()
	return nil
}

func (x *Index) Synced() bool { return x.synced.Load() }

func (x *Index) Namespace(name string) bool { return x.namespaces.Get("", name) != nil }

func (x *Index) Service(ns, name string) *corev1.Service {
	if o := x.services.Get(ns, name); o != nil {
		return o.(*corev1.Service)
	}
	return nil
}

func (x *Index) Slices(ns, service string) []*discoveryv1.EndpointSlice {
	objs := x.slices.ByLabel(ns, service)
	out := make([]*discoveryv1.EndpointSlice, len(objs))
	for i, o := range objs {
		out[i] = o.(*discoveryv1.EndpointSlice)
	}
	return out
}

func (x *Index) PTR(ip netip.Addr) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for name := range x.reverse[ip] {
		out = append(out, name)
	}
	return out
}

// refresh recomputes the reverse records of service ns/name.
func (x *Index) refresh(ns, name string) {
	recs := ptrRecords(x.Service(ns, name), x.Slices(ns, name))
	key := ns + "/" + name
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.contrib[key] {
		if x.reverse[r.ip][r.name]--; x.reverse[r.ip][r.name] == 0 {
			delete(x.reverse[r.ip], r.name)
			if len(x.reverse[r.ip]) == 0 {
				delete(x.reverse, r.ip)
			}
		}
	}
	delete(x.contrib, key)
	if len(recs) == 0 {
		return
	}
	x.contrib[key] = recs
	for _, r := range recs {
		if x.reverse[r.ip] == nil {
			x.reverse[r.ip] = map[string]int{}
		}
		x.reverse[r.ip][r.name]++
	}
}

// ptrRecords are a service's reverse records: its ClusterIPs, and its ready endpoints
// by hostname (a ClusterIP wins over an endpoint with the same address, in answer()).
func ptrRecords(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) []ptrRecord {
	if svc == nil {
		return nil
	}
	base := svc.Name + "." + svc.Namespace + ".svc"
	var out []ptrRecord
	for _, ip := range clusterIPs(svc) {
		out = append(out, ptrRecord{ip, base})
	}
	for _, e := range readyEndpoints(svc, slices) {
		out = append(out, ptrRecord{e.ip, e.hostname + "." + base})
	}
	return out
}

func clusterIPs(svc *corev1.Service) []netip.Addr {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

type endpoint struct {
	ip       netip.Addr
	hostname string
}

// readyEndpoints are the service's ready endpoint addresses, each with its hostname
// (the endpoint's, else its dashed address), deduplicated.
func readyEndpoints(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) []endpoint {
	var out []endpoint
	seen := map[netip.Addr]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || seen[ip] {
					continue
				}
				seen[ip] = true
				h := strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
				if e.Hostname != nil && *e.Hostname != "" {
					h = *e.Hostname
				}
				out = append(out, endpoint{ip, strings.ToLower(h)})
			}
		}
	}
	return out
}
