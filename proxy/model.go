package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netutils "k8s.io/utils/net"
)

// Endpoint is one backend of a service port.
type Endpoint struct {
	IP   string
	Port int32
}

func (e Endpoint) String() string { return fmt.Sprintf("%s:%d", e.IP, e.Port) }

// ServicePort is one port of one service and where its traffic goes: the desired state
// both renderers program.
type ServicePort struct {
	Name        string // namespace/name:port-name
	ClusterIP   string
	ExternalIPs []string
	Protocol    string // tcp, udp, sctp
	Port        int32
	NodePort    int32 // 0: none
	// Affinity is sessionAffinity ClientIP's timeout in seconds; 0 when off.
	Affinity int32
	// HasEndpoints says whether the service has any usable endpoint at all; when it has
	// none, traffic is rejected. When it has some but the traffic policy leaves none for
	// a kind of traffic, that traffic is dropped (as kube-proxy does).
	HasEndpoints bool
	// Internal are the endpoints for ClusterIP traffic (internalTrafficPolicy applied),
	// External those for NodePort and externalIPs traffic (externalTrafficPolicy).
	Internal, External []Endpoint
	// ExternalLocal is externalTrafficPolicy: Local: the client address is kept.
	ExternalLocal bool
}

// id is a short stable name for chains and sets derived from key, which must identify
// what the chain does: equal keys give equal names on every sync.
func id(key string) string {
	sum := sha256.Sum256([]byte(key))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:12])
}

// ID names the service port in chain names.
func (sp *ServicePort) ID() string { return id(sp.Name + "/" + sp.Protocol) }

// EndpointID names one endpoint of the service port in chain and set names.
func (sp *ServicePort) EndpointID(e Endpoint) string {
	return id(sp.Name + "/" + sp.Protocol + "/" + e.String())
}

// Build turns services and their slices into the ports to program. node is this node's
// name, for the Local traffic policies.
func Build(node string, services []*corev1.Service, slices []*discoveryv1.EndpointSlice) []ServicePort {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		k := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		bySvc[k] = append(bySvc[k], s)
	}
	var out []ServicePort
	for _, svc := range services {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		// As kube-proxy: a service another proxy serves, or one marked headless, is not ours.
		if _, other := svc.Labels["service.kubernetes.io/service-proxy-name"]; other {
			continue
		}
		if _, headless := svc.Labels[corev1.IsHeadlessService]; headless {
			continue
		}
		// The kernel reads 011 as octal; Kubernetes reads it as decimal (CVE-2021-29923):
		// rules get the canonical spelling.
		ip = canonicalIP(ip)
		var external []string
		for _, e := range svc.Spec.ExternalIPs {
			external = append(external, canonicalIP(e))
		}
		for _, p := range svc.Spec.Ports {
			sp := ServicePort{Name: fmt.Sprintf("%s/%s:%s", svc.Namespace, svc.Name, p.Name), ClusterIP: ip,
				ExternalIPs: external, Protocol: strings.ToLower(string(p.Protocol)), Port: p.Port}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				sp.NodePort = p.NodePort
			}
			if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
				sp.Affinity = corev1.DefaultClientIPServiceAffinitySeconds
				if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
					sp.Affinity = *c.ClientIP.TimeoutSeconds
				}
			}
			all := endpointsFor(bySvc[svc.Namespace+"/"+svc.Name], p)
			sp.HasEndpoints = len(all.pick("")) > 0
			sp.Internal = all.pick("")
			if pol := svc.Spec.InternalTrafficPolicy; pol != nil && *pol == corev1.ServiceInternalTrafficPolicyLocal {
				sp.Internal = all.pick(node)
			}
			sp.External = all.pick("")
			if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
				sp.External, sp.ExternalLocal = all.pick(node), true
			}
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name+out[i].Protocol < out[j].Name+out[j].Protocol })
	return out
}

// canonicalIP spells ip as Kubernetes reads it (netutils.ParseIPSloppy); "" if invalid.
func canonicalIP(ip string) string {
	if parsed := netutils.ParseIPSloppy(ip); parsed != nil {
		return parsed.String()
	}
	return ""
}

type candidate struct {
	Endpoint
	node                         string
	ready, servingAndTerminating bool
}

type candidates []candidate

// pick returns the ready endpoints (on node, unless node is ""), or the serving and
// terminating ones when none is ready, as kube-proxy falls back.
func (cs candidates) pick(node string) []Endpoint {
	var ready, fallback []Endpoint
	for _, c := range cs {
		switch {
		case node != "" && c.node != node:
		case c.ready:
			ready = append(ready, c.Endpoint)
		case c.servingAndTerminating:
			fallback = append(fallback, c.Endpoint)
		}
	}
	if len(ready) == 0 {
		return fallback
	}
	return ready
}

func endpointsFor(eps []*discoveryv1.EndpointSlice, sp corev1.ServicePort) candidates {
	var out candidates
	seen := map[Endpoint]bool{}
	for _, s := range eps {
		var port int32
		found := false
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && p.Port != nil && proto == sp.Protocol {
				port, found = *p.Port, true
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ep := Endpoint{IP: canonicalIP(e.Addresses[0]), Port: port}
			if seen[ep] {
				continue
			}
			seen[ep] = true
			c := e.Conditions
			node := ""
			if e.NodeName != nil {
				node = *e.NodeName
			}
			out = append(out, candidate{Endpoint: ep, node: node, ready: c.Ready == nil || *c.Ready,
				servingAndTerminating: c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating})
		}
	}
	slices.SortFunc(out, func(a, b candidate) int { return strings.Compare(a.String(), b.String()) })
	return out
}
