package controllers

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
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
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if p.namedPort {
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	}
	if p.terminating {
		pod.Finalizers = []string{"test/hold"} // keeps it while marked
	}
	if _, err := w.api.Create(w.ctx, w.res("pods"), "default", pod, false); err != nil {
		w.t.Fatal(err)
	}
	_, err := w.api.Update(w.ctx, w.res("pods"), "default", p.name, "status", func(cur store.Object) (store.Object, error) {
		st := &cur.(*corev1.Pod).Status
		st.Phase, st.PodIP = corev1.PodRunning, p.ip
		st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: condStatus(p.ready)}}
		return cur, nil
	}, false)
	if err != nil {
		w.t.Fatal(err)
	}
	if p.terminating {
		zero := int64(0)
		w.api.Delete(w.ctx, w.res("pods"), "default", p.name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
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

func (w *world) slices(service string) []*discoveryv1.EndpointSlice {
	objs, _, _ := w.api.List(w.res("endpointslices"), "default", apiserverSelector("kubernetes.io/service-name="+service))
	var out []*discoveryv1.EndpointSlice
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].Ports) > len(out[j].Ports) })
	return out
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

func newEndpointControllers(w *world, max int) (*Endpoints, *EndpointSlices) {
	ep, _ := NewEndpoints(EndpointsConfig{API: w.api, Informers: w.inf})
	sl, _ := NewEndpointSlices(EndpointsConfig{API: w.api, MaxEndpointsPerSlice: max, Informers: w.inf})
	return ep, sl
}

// reconcile runs f for k once the caches hold what the store holds, as they would
// (a moment later) in a running controller.
func (w *world) reconcile(f func(context.Context, string) error, k string) error {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range w.inf.caches {
		for {
			objs, _, err := w.api.List(c.res, "", apiserver.Selector{})
			if err != nil {
				w.t.Fatal(err)
			}
			want := map[string]string{}
			for _, o := range objs {
				want[o.GetNamespace()+"/"+o.GetName()] = o.GetResourceVersion()
			}
			got := map[string]string{}
			for _, o := range c.List("", apiserver.Selector{}) {
				got[o.GetNamespace()+"/"+o.GetName()] = o.GetResourceVersion()
			}
			if maps.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				w.t.Fatalf("cache of %s did not catch up with the store", c.res.Plural)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return f(w.ctx, k)
}

func TestEndpointsAndSlicesFollowPods(t *testing.T) {
	for _, publish := range []bool{false, true} {
		t.Run(fmt.Sprintf("publishNotReadyAddresses=%v", publish), func(t *testing.T) {
			w := newWorld(t)
			ep, sl := newEndpointControllers(w, 100)
			w.api.Create(w.ctx, w.res("services"), "default", backendService(publish), false)
			for _, p := range []podSpec{
				{name: "p1", ip: "10.244.0.5", ready: true, namedPort: true, hostname: "h1", subdom: "b"},
				{name: "p2", ip: "10.244.0.6", ready: false, namedPort: true},
				{name: "p3", ip: "10.244.0.7", ready: true},
				{name: "p4", ip: "10.244.0.8", ready: true, namedPort: true, terminating: true},
				{name: "p5", ip: "", ready: true, namedPort: true},
			} {
				w.seedPod(p)
			}
			if err := w.reconcile(ep.reconcile, "default/b"); err != nil {
				t.Fatal(err)
			}
			if err := w.reconcile(sl.reconcile, "default/b"); err != nil {
				t.Fatal(err)
			}
			obj, err := w.api.Get(w.res("endpoints"), "default", "b")
			if err != nil {
				t.Fatal(err)
			}
			e := obj.(*corev1.Endpoints)
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

			slices := w.slices("b")
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
	_, sl := newEndpointControllers(w, 100)
	svc := backendService(false)
	svc.Spec.Ports = svc.Spec.Ports[1:] // numeric port only
	w.api.Create(w.ctx, w.res("services"), "default", svc, false)
	for i := 0; i < 250; i++ {
		w.seedPod(podSpec{name: fmt.Sprint("p", i), ip: fmt.Sprintf("10.244.%d.%d", i/200, i%200+2), ready: true})
	}
	w.reconcile(sl.reconcile, "default/b")
	slices := w.slices("b")
	sizes := []int{}
	for _, s := range slices {
		sizes = append(sizes, len(s.Endpoints))
	}
	sort.Ints(sizes)
	if fmt.Sprint(sizes) != "[50 100 100]" {
		t.Errorf("slice sizes %v, want [50 100 100]", sizes)
	}
	for i := 0; i < 250; i++ {
		zero := int64(0)
		w.api.Delete(w.ctx, w.res("pods"), "default", fmt.Sprint("p", i), metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	w.reconcile(sl.reconcile, "default/b")
	if s := w.slices("b"); len(s) != 1 || len(s[0].Endpoints) != 0 {
		t.Errorf("after all pods left: %d slices (want one empty placeholder)", len(s))
	}
}

func TestMirroringUserSlicesAndDeletion(t *testing.T) {
	w := newWorld(t)
	ep, sl := newEndpointControllers(w, 100)
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}}
	w.api.Create(w.ctx, w.res("services"), "default", ext, false)
	user := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "192.0.2.10"}}, Ports: []corev1.EndpointPort{{Port: 5432}}}}}
	w.api.Create(w.ctx, w.res("endpoints"), "default", user, false)
	mine := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "handmade", Labels: map[string]string{discoveryv1.LabelServiceName: "ext"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.99"}}}}
	w.api.Create(w.ctx, w.res("endpointslices"), "default", mine, false)
	w.reconcile(ep.reconcile, "default/ext")
	w.reconcile(sl.reconcile, "default/ext")
	got, _ := w.api.Get(w.res("endpoints"), "default", "ext")
	if addrs(got.(*corev1.Endpoints).Subsets[0].Addresses) != "192.0.2.10/" {
		t.Errorf("the controller touched a selector-less service's Endpoints: %+v", got)
	}
	var mirrored *discoveryv1.EndpointSlice
	for _, s := range w.slices("ext") {
		if s.Labels[discoveryv1.LabelManagedBy] == managedByMirror {
			mirrored = s
		}
	}
	if mirrored == nil || sliceEndpoints(mirrored) != "192.0.2.10/:r=true,s=true,t=false" || *mirrored.Ports[0].Port != 5432 {
		t.Fatalf("mirrored slice %+v", mirrored)
	}
	// Deleting the selector service removes what the controllers made; the user's slice stays.
	w.api.Create(w.ctx, w.res("services"), "default", backendService(false), false)
	w.reconcile(ep.reconcile, "default/b")
	w.reconcile(sl.reconcile, "default/b")
	w.api.Delete(w.ctx, w.res("services"), "default", "b", metav1.DeleteOptions{})
	w.reconcile(ep.reconcile, "default/b")
	w.reconcile(sl.reconcile, "default/b")
	if _, err := w.api.Get(w.res("endpoints"), "default", "b"); !apierrors.IsNotFound(err) {
		t.Errorf("endpoints of a deleted service: %v", err)
	}
	if s := w.slices("b"); len(s) != 0 {
		t.Errorf("%d slices of a deleted service", len(s))
	}
	if _, err := w.api.Get(w.res("endpointslices"), "default", "handmade"); err != nil {
		t.Errorf("user slice removed: %v", err)
	}
}

func apiserverSelector(s string) apiserver.Selector {
	sel, _ := labels.Parse(s)
	return apiserver.Selector{Labels: sel}
}
