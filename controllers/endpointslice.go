package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// Managers of EndpointSlices, as Kubernetes names them.
const (
	managedBySlices = "endpointslice-controller.k8s.io"
	managedByMirror = "endpointslicemirroring-controller.k8s.io"
)

// EndpointSlices keeps a service's slices in step with its pods (services with a
// selector) or with its user-managed Endpoints (mirroring, services without one).
// Slices carrying no manager label of ours are the user's and are left alone.
type EndpointSlices struct {
	api                             *apiserver.API
	svcRes, sliceRes, podRes, epRes *apiserver.Resource
	loop                            *Loop
	max                             int
	watches                         *serviceWatches
	// lastWrite is the newest revision this controller wrote; reads of the slice
	// cache wait for it, so a reconcile never misses a slice the last one made.
	lastWrite atomic.Int64
}

// NewEndpointSlices builds the EndpointSlice controller.
func NewEndpointSlices(cfg EndpointsConfig) (*EndpointSlices, error) {
	if cfg.API == nil {
		return nil, errors.New("endpointslice controller: no API")
	}
	if cfg.MaxEndpointsPerSlice <= 0 {
		cfg.MaxEndpointsPerSlice = 100
	}
	reg := cfg.API.Registry()
	c := &EndpointSlices{api: cfg.API, svcRes: reg.Lookup("", "services"), sliceRes: reg.Lookup("discovery.k8s.io", "endpointslices"),
		podRes: reg.Lookup("", "pods"), epRes: reg.Lookup("", "endpoints"), max: cfg.MaxEndpointsPerSlice}
	c.loop = NewLoop("endpointslice", cfg.Log, c.reconcile)
	c.watches = newServiceWatches(cfg, c.loop, c.sliceRes)
	c.watches.objs.IndexLabel(discoveryv1.LabelServiceName)
	c.watches.inf.For(c.epRes).OnChange(func(o store.Object) { c.loop.Enqueue(key(o)) })
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *EndpointSlices) Run(ctx context.Context) error {
	if c.watches.start(ctx) && c.watches.inf.For(c.epRes).WaitSynced(ctx) {
		c.loop.Run(ctx, 2)
	}
	return nil
}

// sliceContent is what one slice should hold.
type sliceContent struct {
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint
}

func (c *EndpointSlices) reconcile(ctx context.Context, k string) error {
	ns, name := splitKey(k)
	obj, err := c.api.Get(c.svcRes, ns, name)
	if apierrors.IsNotFound(err) {
		return c.sync(ctx, ns, name, nil, managedBySlices, nil, time.Time{})
	}
	if err != nil {
		return err
	}
	svc := obj.(*corev1.Service)
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return c.sync(ctx, ns, name, nil, managedBySlices, nil, time.Time{})
	case len(svc.Spec.Selector) > 0:
		pods, trigger, err := selectedPods(c.watches.pods, svc)
		if err != nil {
			return err
		}
		return c.sync(ctx, ns, name, svc, managedBySlices, c.chunk(podSlices(svc, pods)), trigger)
	}
	// No selector: mirror the user's Endpoints.
	epObj, err := c.api.Get(c.epRes, ns, name)
	if apierrors.IsNotFound(err) {
		return c.sync(ctx, ns, name, nil, managedByMirror, nil, time.Time{})
	}
	if err != nil {
		return err
	}
	return c.sync(ctx, ns, name, epObj, managedByMirror, c.chunk(mirrorSlices(epObj.(*corev1.Endpoints))), time.Now())
}

// podSlices groups a service's pods by the ports they serve.
func podSlices(svc *corev1.Service, pods []*corev1.Pod) []sliceContent {
	groups := map[string]*sliceContent{}
	var order []string
	for _, p := range pods {
		var ports []discoveryv1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			if n, ok := targetPort(sp, p); ok {
				ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(n), Protocol: ptr.To(sp.Protocol), AppProtocol: sp.AppProtocol})
			}
		}
		gk := fmt.Sprint(portKey(ports))
		g := groups[gk]
		if g == nil {
			g = &sliceContent{ports: ports}
			groups[gk] = g
			order = append(order, gk)
		}
		terminating := p.DeletionTimestamp != nil
		serving := podReady(p)
		ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
		ep := discoveryv1.Endpoint{Addresses: []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}, NodeName: strPtr(p.Spec.NodeName)}
		if h := endpointHostname(p, svc); h != "" {
			ep.Hostname = ptr.To(h)
		}
		g.endpoints = append(g.endpoints, ep)
	}
	sort.Strings(order)
	out := []sliceContent{}
	for _, gk := range order {
		out = append(out, *groups[gk])
	}
	return out
}

func portKey(ports []discoveryv1.EndpointPort) []string {
	var k []string
	for _, p := range ports {
		k = append(k, fmt.Sprintf("%s/%d/%s", *p.Name, *p.Port, *p.Protocol))
	}
	return k
}

// mirrorSlices turns a user's Endpoints into slice contents.
func mirrorSlices(ep *corev1.Endpoints) []sliceContent {
	var out []sliceContent
	for _, ss := range ep.Subsets {
		sc := sliceContent{}
		for _, p := range ss.Ports {
			sc.ports = append(sc.ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(p.Protocol), AppProtocol: p.AppProtocol})
		}
		for ready, addrs := range map[bool][]corev1.EndpointAddress{true: ss.Addresses, false: ss.NotReadyAddresses} {
			for _, a := range addrs {
				e := discoveryv1.Endpoint{Addresses: []string{a.IP}, TargetRef: a.TargetRef, NodeName: a.NodeName,
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)}}
				if a.Hostname != "" {
					e.Hostname = ptr.To(a.Hostname)
				}
				sc.endpoints = append(sc.endpoints, e)
			}
		}
		sort.Slice(sc.endpoints, func(i, j int) bool { return sc.endpoints[i].Addresses[0] < sc.endpoints[j].Addresses[0] })
		out = append(out, sc)
	}
	return out
}

// chunk splits contents at the per-slice maximum; a service always keeps one slice,
// empty when it has no endpoints (Kubernetes' placeholder).
func (c *EndpointSlices) chunk(contents []sliceContent) []sliceContent {
	var out []sliceContent
	for _, sc := range contents {
		for i := 0; i < len(sc.endpoints); i += c.max {
			out = append(out, sliceContent{ports: sc.ports, endpoints: sc.endpoints[i:min(i+c.max, len(sc.endpoints))]})
		}
	}
	if len(out) == 0 {
		out = []sliceContent{{ports: []discoveryv1.EndpointPort{}, endpoints: []discoveryv1.Endpoint{}}}
	}
	return out
}

// sync makes the slices of manager for service ns/name hold want (nil: none), reusing
// existing slices in name order, creating and deleting the difference.
func (c *EndpointSlices) sync(ctx context.Context, ns, name string, owner store.Object, manager string, want []sliceContent, trigger time.Time) error {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: manager})
	c.watches.objs.WaitRev(ctx, c.lastWrite.Load())
	var objs []store.Object
	for _, o := range c.watches.objs.ByLabel(ns, name) {
		if sel.Matches(labels.Set(o.GetLabels())) {
			objs = append(objs, o)
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].GetName() < objs[j].GetName() })
	for i, sc := range want {
		if i < len(objs) {
			if err := c.update(ctx, objs[i].(*discoveryv1.EndpointSlice), sc, trigger); err != nil {
				return err
			}
			continue
		}
		slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-",
			Labels:      map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: manager},
			Annotations: map[string]string{triggerAnnotation: trigger.UTC().Format(time.RFC3339Nano)}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: sc.ports, Endpoints: sc.endpoints}
		if owner != nil {
			gvk := owner.GetObjectKind().GroupVersionKind()
			slice.OwnerReferences = []metav1.OwnerReference{*controllerRef(owner, metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind})}
		}
		created, err := c.api.Create(ctx, c.sliceRes, ns, slice, false)
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		if err != nil {
			return err
		}
		c.wrote(created)
	}
	for _, o := range objs[min(len(want), len(objs)):] {
		if _, _, err := c.api.Delete(ctx, c.sliceRes, ns, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func (c *EndpointSlices) update(ctx context.Context, cur *discoveryv1.EndpointSlice, sc sliceContent, trigger time.Time) error {
	if apiequality.Semantic.DeepEqual(cur.Ports, sc.ports) && apiequality.Semantic.DeepEqual(cur.Endpoints, sc.endpoints) {
		return nil
	}
	updated, err := c.api.Update(ctx, c.sliceRes, cur.Namespace, cur.Name, "", func(o store.Object) (store.Object, error) {
		s := o.(*discoveryv1.EndpointSlice)
		s.Ports, s.Endpoints = sc.ports, sc.endpoints
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[triggerAnnotation] = trigger.UTC().Format(time.RFC3339Nano)
		return s, nil
	}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.wrote(updated)
	}
	return err
}

// wrote records a write's revision for the next read of the cache.
func (c *EndpointSlices) wrote(o store.Object) {
	r := revOf(o)
	for cur := c.lastWrite.Load(); r > cur && !c.lastWrite.CompareAndSwap(cur, r); cur = c.lastWrite.Load() {
	}
}
