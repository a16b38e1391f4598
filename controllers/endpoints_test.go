package controllers

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podSpec struct {
	name, ip           string
	ready, terminating bool
	namedPort          bool // has the container port named "http"
	hostname, subdom   string
}

func (w *world) seedPod(p podSpec) {
	w.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{"app": "b"}},
		Spec: corev1.PodSpec{NodeName: "n1", Hostname: p.hostname, Subdomain: p.subdom,
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: condStatus(p.ready)}}}}
	if p.namedPort {
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	}
	if p.terminating {
		pod.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	w.apply(pod)
}

func backendService(publishNotReady bool) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"tier": "x"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "b"}, PublishNotReadyAddresses: publishNotReady,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)}}}}
}

func addrs(list []corev1.EndpointAddress) string {
	var s []string
	for _, a := range list {
		s = append(s, a.IP+"/"+a.Hostname)
	}
	return strings.Join(s, ",")
}

func (w *world) slicesOf(service string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range w.allSlices() {
		if s.Labels[discoveryv1.LabelServiceName] == service {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].Ports) > len(out[j].Ports) })
	return out
}

func (w *world) endpointsOf(name string) *corev1.Endpoints {
	for _, e := range w.endpoints() {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func sliceEndpoints(s *discoveryv1.EndpointSlice) string {
	var parts []string
	for _, e := range s.Endpoints {
		h := ""
		if e.Hostname != nil {
			h = *e.Hostname
		}
		parts = append(parts, fmt.Sprintf("%s/%s:r=%v,s=%v,t=%v", e.Addresses[0], h, *e.Conditions.Ready, *e.Conditions.Serving, *e.Conditions.Terminating))
	}
	return strings.Join(parts, " ")
}

func TestEndpointsAndSlicesFollowPods(t *testing.T) {
	for _, publish := range []bool{false, true} {
		t.Run(fmt.Sprintf("publishNotReadyAddresses=%v", publish), func(t *testing.T) {
			w := newWorld(t)
			w.apply(backendService(publish))
			for _, p := range []podSpec{
				{name: "p1", ip: "10.244.0.5", ready: true, namedPort: true, hostname: "h1", subdom: "b"},
				{name: "p2", ip: "10.244.0.6", ready: false, namedPort: true},
				{name: "p3", ip: "10.244.0.7", ready: true},
				{name: "p4", ip: "10.244.0.8", ready: true, namedPort: true, terminating: true},
				{name: "p5", ip: "", ready: true, namedPort: true},
			} {
				w.seedPod(p)
			}
			w.reconcile(w.ep.reconcile, "default/b")
			w.reconcile(w.slices.reconcile, "default/b")
			e := w.endpointsOf("b")
			if e == nil {
				t.Fatal("no Endpoints made")
			}
			if len(e.Subsets) != 2 || e.Labels["tier"] != "x" || e.Annotations[triggerAnnotation] == "" {
				t.Fatalf("endpoints %+v", e)
			}
			both, metricsOnly := e.Subsets[0], e.Subsets[1]
			if len(both.Ports) != 2 {
				both, metricsOnly = metricsOnly, both
			}
			wantReady, wantNot := "10.244.0.5/h1", "10.244.0.6/"
			if publish {
				wantReady, wantNot = "10.244.0.5/h1,10.244.0.6/,10.244.0.8/", ""
			}
			if got := addrs(both.Addresses); got != wantReady {
				t.Errorf("ready addresses %q, want %q", got, wantReady)
			}
			if got := addrs(both.NotReadyAddresses); got != wantNot {
				t.Errorf("not-ready addresses %q, want %q", got, wantNot)
			}
			if both.Ports[0].Port != 8080 && both.Ports[1].Port != 8080 {
				t.Errorf("named targetPort not resolved: %+v", both.Ports)
			}
			if got := addrs(metricsOnly.Addresses); got != "10.244.0.7/" || len(metricsOnly.Ports) != 1 || metricsOnly.Ports[0].Port != 9090 {
				t.Errorf("pod without the named port: %+v", metricsOnly)
			}
			if ref := both.Addresses[0].TargetRef; ref == nil || ref.Name != "p1" || *both.Addresses[0].NodeName != "n1" {
				t.Errorf("targetRef/nodeName %+v", both.Addresses[0])
			}

			slices := w.slicesOf("b")
			if len(slices) != 2 {
				t.Fatalf("%d slices, want 2 (one per port set)", len(slices))
			}
			s := slices[0]
			if s.Labels[discoveryv1.LabelManagedBy] != managedBySlices || metav1.GetControllerOf(s) == nil || metav1.GetControllerOf(s).Kind != "Service" {
				t.Errorf("slice labels %v owners %v", s.Labels, s.OwnerReferences)
			}
			want := "10.244.0.5/h1:r=true,s=true,t=false 10.244.0.6/:r=false,s=false,t=false 10.244.0.8/:r=false,s=true,t=true"
			if publish {
				want = "10.244.0.5/h1:r=true,s=true,t=false 10.244.0.6/:r=true,s=false,t=false 10.244.0.8/:r=true,s=true,t=true"
			}
			if got := sliceEndpoints(s); got != want {
				t.Errorf("slice endpoints\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestSlicesSplitAndFollowScaleDown(t *testing.T) {
	w := newWorld(t)
	svc := backendService(false)
	svc.Spec.Ports = svc.Spec.Ports[1:] // numeric port only
	w.apply(svc)
	for i := 0; i < 250; i++ {
		w.seedPod(podSpec{name: fmt.Sprint("p", i), ip: fmt.Sprintf("10.244.%d.%d", i/200, i%200+2), ready: true})
	}
	w.reconcile(w.slices.reconcile, "default/b")
	slices := w.slicesOf("b")
	sizes := []int{}
	for _, s := range slices {
		sizes = append(sizes, len(s.Endpoints))
	}
	sort.Ints(sizes)
	if fmt.Sprint(sizes) != "[50 100 100]" {
		t.Errorf("slice sizes %v, want [50 100 100]", sizes)
	}
	// A reconcile right after its own writes waits for the cache to show them.
	if err := w.slices.reconcile(w.ctx, "default/b"); err != ErrRequeue {
		t.Errorf("reconcile before the cache shows the slices just made: %v, want ErrRequeue", err)
	}
	if n := len(w.slicesOf("b")); n != 3 {
		t.Errorf("%d slices after a reconcile on a stale cache, want still 3", n)
	}
	for i := 0; i < 250; i++ {
		if err := w.client.CoreV1().Pods("default").Delete(w.ctx, fmt.Sprint("p", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.reconcile(w.slices.reconcile, "default/b")
	if s := w.slicesOf("b"); len(s) != 1 || len(s[0].Endpoints) != 0 {
		t.Errorf("after all pods left: %d slices (want one empty placeholder)", len(s))
	}
}

func TestMirroringUserSlicesAndDeletion(t *testing.T) {
	w := newWorld(t)
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}}
	w.apply(ext)
	user := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "192.0.2.10"}}, Ports: []corev1.EndpointPort{{Port: 5432}}}}}
	w.apply(user)
	mine := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "handmade", Labels: map[string]string{discoveryv1.LabelServiceName: "ext"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.99"}}}}
	w.apply(mine)
	w.reconcile(w.ep.reconcile, "default/ext")
	w.reconcile(w.slices.reconcile, "default/ext")
	got := w.endpointsOf("ext")
	if addrs(got.Subsets[0].Addresses) != "192.0.2.10/" {
		t.Errorf("the controller touched a selector-less service's Endpoints: %+v", got)
	}
	var mirrored *discoveryv1.EndpointSlice
	for _, s := range w.slicesOf("ext") {
		if s.Labels[discoveryv1.LabelManagedBy] == managedByMirror {
			mirrored = s
		}
	}
	if mirrored == nil || sliceEndpoints(mirrored) != "192.0.2.10/:r=true,s=true,t=false" || *mirrored.Ports[0].Port != 5432 {
		t.Fatalf("mirrored slice %+v", mirrored)
	}
	// Deleting the selector service removes what the controllers made; the user's slice stays.
	w.apply(backendService(false))
	w.reconcile(w.ep.reconcile, "default/b")
	w.reconcile(w.slices.reconcile, "default/b")
	if err := w.client.CoreV1().Services("default").Delete(w.ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.reconcile(w.ep.reconcile, "default/b")
	w.reconcile(w.slices.reconcile, "default/b")
	if e := w.endpointsOf("b"); e != nil {
		t.Errorf("endpoints of a deleted service: %+v", e)
	}
	if s := w.slicesOf("b"); len(s) != 0 {
		t.Errorf("%d slices of a deleted service", len(s))
	}
	if s := w.slicesOf("ext"); !slices.ContainsFunc(s, func(s *discoveryv1.EndpointSlice) bool { return s.Name == "handmade" }) {
		t.Errorf("user slice removed: %v", s)
	}
}
