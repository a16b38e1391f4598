package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/index"
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
	client    kubernetes.Interface
	watches   *serviceWatches
	slices    cache.Indexer
	endpoints corelisters.EndpointsLister
	loop      *Loop
	max       int
	// expect holds each service's last slice writes until the slice cache shows them,
	// so a reconcile never creates again a slice the last one made.
	expect *expectations
}

// NewEndpointSlices builds the EndpointSlice controller.
func NewEndpointSlices(cfg EndpointsConfig) (*EndpointSlices, error) {
	if cfg.MaxEndpointsPerSlice <= 0 {
		cfg.MaxEndpointsPerSlice = 100
	}
	sliceInf, epInf := cfg.Informers.Discovery().V1().EndpointSlices().Informer(), cfg.Informers.Core().V1().Endpoints()
	if err := index.AddSlicesByService(sliceInf); err != nil {
		return nil, err
	}
	c := &EndpointSlices{client: cfg.Client, slices: sliceInf.GetIndexer(), endpoints: epInf.Lister(),
		max: cfg.MaxEndpointsPerSlice, expect: newExpectations()}
	c.loop = NewLoop("endpointslice", cfg.Log, c.reconcile)
	c.watches = newServiceWatches(cfg, c.loop, sliceInf)
	c.watches.synced = append(c.watches.synced, epInf.Informer().HasSynced)
	sliceInf.AddEventHandler(c.expect.handler())
	epInf.Informer().AddEventHandler(c.loop.Handler())
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *EndpointSlices) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.watches.synced...)
	return nil
}

// sliceContent is what one slice should hold.
type sliceContent struct {
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint
}

func (c *EndpointSlices) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if !c.expect.met(key, func(string, types.UID) bool { return false }) {
		return ErrRequeue // the slice cache has not seen this controller's last writes
	}
	svc, err := c.watches.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.expect.forget(key)
		return c.sync(ctx, key, nil, managedBySlices, nil, time.Time{})
	}
	if err != nil {
		return err
	}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return c.sync(ctx, key, nil, managedBySlices, nil, time.Time{})
	case len(svc.Spec.Selector) > 0:
		pods, trigger, err := selectedPods(c.watches.pods, svc)
		if err != nil {
			return err
		}
		return c.sync(ctx, key, svc, managedBySlices, c.chunk(podSlices(svc, pods)), trigger)
	}
	// No selector: mirror the user's Endpoints.
	ep, err := c.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return c.sync(ctx, key, nil, managedByMirror, nil, time.Time{})
	}
	if err != nil {
		return err
	}
	return c.sync(ctx, key, ep, managedByMirror, c.chunk(mirrorSlices(ep)), time.Now())
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

// sync makes the slices of manager for service key hold want (nil: none), reusing
// existing slices in name order, creating and deleting the difference; owner (the
// service, or the mirrored Endpoints) owns the slices it creates.
func (c *EndpointSlices) sync(ctx context.Context, key string, owner runtime.Object, manager string, want []sliceContent, trigger time.Time) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	var slices []*discoveryv1.EndpointSlice
	for _, s := range index.SlicesOf(c.slices, ns, name) {
		if s.Labels[discoveryv1.LabelManagedBy] == manager {
			slices = append(slices, s)
		}
	}
	sort.Slice(slices, func(i, j int) bool { return slices[i].Name < slices[j].Name })
	client := c.client.DiscoveryV1().EndpointSlices(ns)
	for i, sc := range want {
		if i < len(slices) {
			if err := c.update(ctx, key, slices[i], sc, trigger); err != nil {
				return err
			}
			continue
		}
		slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-",
			Labels:      map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: manager},
			Annotations: map[string]string{triggerAnnotation: trigger.UTC().Format(time.RFC3339Nano)}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: sc.ports, Endpoints: sc.endpoints}
		if m, err := meta.Accessor(owner); err == nil {
			gvk, _, _ := scheme.Scheme.ObjectKinds(owner)
			slice.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(m, gvk[0])}
		}
		created, err := client.Create(ctx, slice, metav1.CreateOptions{})
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		if err != nil {
			return err
		}
		c.expect.wrote(key, created)
	}
	for _, s := range slices[min(len(want), len(slices)):] {
		err := client.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(s.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
	}
	return nil
}

func (c *EndpointSlices) update(ctx context.Context, key string, cur *discoveryv1.EndpointSlice, sc sliceContent, trigger time.Time) error {
	if apiequality.Semantic.DeepEqual(cur.Ports, sc.ports) && apiequality.Semantic.DeepEqual(cur.Endpoints, sc.endpoints) {
		return nil
	}
	next := cur.DeepCopy()
	next.Ports, next.Endpoints = sc.ports, sc.endpoints
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[triggerAnnotation] = trigger.UTC().Format(time.RFC3339Nano)
	updated, err := c.client.DiscoveryV1().EndpointSlices(cur.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.expect.wrote(key, updated)
	}
	return err
}
