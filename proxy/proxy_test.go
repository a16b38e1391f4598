package proxy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func slice(service string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: service + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: eps}
}

func ep(ip string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{
		Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

func TestBuildChoosesEndpoints(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}
	ports := Build("node1",
		[]*corev1.Service{svc("a", "10.96.0.20", http), svc("b", "10.96.0.21", http), svc("c", "10.96.0.22", http),
			svc("headless", corev1.ClusterIPNone, http)},
		[]*discoveryv1.EndpointSlice{
			slice("a", 8080, ep("10.244.0.3", true, true, false), ep("10.244.0.2", false, false, false), ep("10.244.0.4", false, true, true)),
			slice("b", 8080, ep("10.244.0.5", false, true, true), ep("10.244.0.6", false, false, false)),
		})
	got := map[string]string{}
	for _, p := range ports {
		var eps []string
		for _, e := range p.Internal {
			eps = append(eps, e.IP)
		}
		got[p.Name] = p.ClusterIP + " " + strings.Join(eps, ",")
	}
	want := map[string]string{
		"default/a:http": "10.96.0.20 10.244.0.3", // ready only
		"default/b:http": "10.96.0.21 10.244.0.5", // none ready: serving+terminating
		"default/c:http": "10.96.0.22 ",           // no endpoints
	}
	if len(got) != len(want) {
		t.Errorf("ports %v (headless services get none)", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

