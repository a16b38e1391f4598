package proxy

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Endpoint is one backend of a service port.
type Endpoint struct {
	IP   string
	Port int32
}

// ServicePort is one (ClusterIP, protocol, port) and the endpoints traffic to it goes to.
type ServicePort struct {
	Service   string // namespace/name:port-name, for chain names and comments
	ClusterIP string
	Protocol  string // tcp, udp, sctp
	Port      int32
	Endpoints []Endpoint
}

// Build turns services and their slices into the ports to program: ready endpoints,
// or serving+terminating ones when none is ready (as kube-proxy falls back).
func Build(services []*corev1.Service, slices []*discoveryv1.EndpointSlice) []ServicePort {
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
		for _, p := range svc.Spec.Ports {
			sp := ServicePort{Service: fmt.Sprintf("%s/%s:%s", svc.Namespace, svc.Name, p.Name), ClusterIP: ip,
				Protocol: strings.ToLower(string(p.Protocol)), Port: p.Port}
			sp.Endpoints = endpointsFor(bySvc[svc.Namespace+"/"+svc.Name], p)
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

func endpointsFor(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort) []Endpoint {
	var ready, fallback []Endpoint
	seen := map[Endpoint]bool{}
	for _, s := range slices {
		var port int32
		found := false
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil && p.Protocol != nil && *p.Protocol == sp.Protocol {
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
			ep := Endpoint{IP: e.Addresses[0], Port: port}
			if seen[ep] {
				continue
			}
			seen[ep] = true
			c := e.Conditions
			switch {
			case c.Ready == nil || *c.Ready:
				ready = append(ready, ep)
			case c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating:
				fallback = append(fallback, ep)
			}
		}
	}
	if len(ready) == 0 {
		ready = fallback
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].IP < ready[j].IP })
	return ready
}
