package dns

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	netutils "k8s.io/utils/net"

	"github.com/minicluster/minicluster/index"
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

// Index is the daemon's Source: the shared informers' caches of services,
// endpointslices and namespaces, plus a reverse map kept from their changes.
type Index struct {
	services   corelisters.ServiceLister
	slices     cache.Indexer
	namespaces corelisters.NamespaceLister
	informers  []cache.InformerSynced
	synced     atomic.Bool
	// generation counts the changes seen (services, slices, namespaces): answers
	// computed at one generation hold until the next.
	generation atomic.Uint64

	mu      sync.RWMutex
	reverse map[netip.Addr]map[string]int // address → name → how many records give it
	contrib map[string][]ptrRecord        // service key → its records
}

type ptrRecord struct {
	ip   netip.Addr
	name string
}

// NewIndex builds the index over the shared informers; it fills as they do.
func NewIndex(services coreinformers.ServiceInformer, slices discoveryinformers.EndpointSliceInformer, namespaces coreinformers.NamespaceInformer) (*Index, error) {
	sliceInf := slices.Informer()
	if err := index.AddSlicesByService(sliceInf); err != nil {
		return nil, err
	}
	x := &Index{services: services.Lister(), slices: sliceInf.GetIndexer(), namespaces: namespaces.Lister(),
		informers: []cache.InformerSynced{services.Informer().HasSynced, sliceInf.HasSynced, namespaces.Informer().HasSynced},
		reverse:   map[netip.Addr]map[string]int{}, contrib: map[string][]ptrRecord{}}
	services.Informer().AddEventHandler(index.OnService(x.refresh))
	sliceInf.AddEventHandler(index.OnService(x.refresh))
	bump := func(any) { x.generation.Add(1) }
	namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: bump,
		UpdateFunc: func(_, o any) { bump(o) }, DeleteFunc: bump})
	return x, nil
}

// Run marks the index synced once every informer has its first list.
func (x *Index) Run(ctx context.Context) error {
	if cache.WaitForCacheSync(ctx.Done(), x.informers...) {
		x.synced.Store(true)
	}
	return nil
}

func (x *Index) Synced() bool { return x.synced.Load() }

// Generation changes with every change the index sees.
func (x *Index) Generation() uint64 { return x.generation.Load() }

func (x *Index) Namespace(name string) bool {
	_, err := x.namespaces.Get(name)
	return err == nil
}

func (x *Index) Service(ns, name string) *corev1.Service {
	svc, err := x.services.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

func (x *Index) Slices(ns, service string) []*discoveryv1.EndpointSlice {
	return index.SlicesOf(x.slices, ns, service)
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
	defer x.generation.Add(1) // after the records: an answer computed before is stale
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
		if ip, ok := parseIP(s); ok {
			out = append(out, ip)
		}
	}
	return out
}

// parseIP reads an address of the API as Kubernetes does: leading zeros are decimal
// (netutils.ParseIPSloppy, CVE-2021-29923).
func parseIP(s string) (netip.Addr, bool) {
	ip, ok := netip.AddrFromSlice(netutils.ParseIPSloppy(s))
	return ip.Unmap(), ok
}

type endpoint struct {
	ip       netip.Addr
	hostname string
	ports    []discoveryv1.EndpointPort // its slice's: the ports it listens on
}

// readyEndpoints are the service's ready endpoint addresses, each with its hostname
// (the endpoint's, else its dashed address) and ports, deduplicated (an address in two
// slices has the ports of both).
func readyEndpoints(svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) []endpoint {
	var out []endpoint
	seen := map[netip.Addr]int{}
	for _, s := range epSlices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, a := range e.Addresses {
				ip, ok := parseIP(a)
				if !ok {
					continue
				}
				if i, dup := seen[ip]; dup {
					out[i].ports = append(out[i].ports, s.Ports...)
					continue
				}
				seen[ip] = len(out)
				h := strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
				if e.Hostname != nil && *e.Hostname != "" {
					h = *e.Hostname
				}
				out = append(out, endpoint{ip, strings.ToLower(h), slices.Clone(s.Ports)})
			}
		}
	}
	return out
}
