package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// triggerAnnotation records when the change that produced an Endpoints or EndpointSlice
// happened; the proxy measures network programming latency from it.
const triggerAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

// EndpointsConfig configures the Endpoints and EndpointSlice controllers.
type EndpointsConfig struct {
	API *apiserver.API
	Log *slog.Logger
	// Informers are the shared caches to read from; nil: the controller keeps its own.
	Informers *Informers
	// MaxEndpointsPerSlice caps a slice (default 100, as Kubernetes).
	MaxEndpointsPerSlice int
}

// selectedPods returns the pods a service with a selector picks, and the newest change
// among them and the service (the trigger time); nil for services without a selector.
func selectedPods(podCache *Cache, svc *corev1.Service) ([]*corev1.Pod, time.Time, error) {
	if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, time.Time{}, nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	objs := podCache.List(svc.Namespace, apiserver.Selector{Labels: sel})
	trigger := svc.CreationTimestamp.Time
	var pods []*corev1.Pod
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, p)
		for _, c := range p.Status.Conditions {
			if c.LastTransitionTime.After(trigger) {
				trigger = c.LastTransitionTime.Time
			}
		}
		if p.DeletionTimestamp != nil && p.DeletionTimestamp.Add(-time.Duration(ptrInt64(p.DeletionGracePeriodSeconds))*time.Second).After(trigger) {
			trigger = p.DeletionTimestamp.Add(-time.Duration(ptrInt64(p.DeletionGracePeriodSeconds)) * time.Second)
		}
		if p.CreationTimestamp.After(trigger) {
			trigger = p.CreationTimestamp.Time
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Status.PodIP < pods[j].Status.PodIP })
	return pods, trigger, nil
}

func ptrInt64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// targetPort resolves a service port's targetPort for one pod: a number as is, a name
// through the pod's container ports (false when the pod has no such port).
func targetPort(sp corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		if sp.TargetPort.IntVal == 0 {
			return sp.Port, true
		}
		return sp.TargetPort.IntVal, true
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// podServes: the pod counts as ready for a service (ready, or the service publishes
// not-ready addresses).
func podServes(p *corev1.Pod, svc *corev1.Service) bool {
	return svc.Spec.PublishNotReadyAddresses || podReady(p)
}

// endpointHostname is set when the pod names itself into the service's subdomain.
func endpointHostname(p *corev1.Pod, svc *corev1.Service) string {
	if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
		return p.Spec.Hostname
	}
	return ""
}

// Endpoints keeps each selector service's Endpoints object in step with its pods.
type Endpoints struct {
	api                   *apiserver.API
	svcRes, epRes, podRes *apiserver.Resource
	loop                  *Loop
	watches               *serviceWatches
}

// NewEndpoints builds the Endpoints controller.
func NewEndpoints(cfg EndpointsConfig) (*Endpoints, error) {
	if cfg.API == nil {
		return nil, errors.New("endpoints controller: no API")
	}
	reg := cfg.API.Registry()
	c := &Endpoints{api: cfg.API, svcRes: reg.Lookup("", "services"), epRes: reg.Lookup("", "endpoints"), podRes: reg.Lookup("", "pods")}
	c.loop = NewLoop("endpoints", cfg.Log, c.reconcile)
	c.watches = newServiceWatches(cfg, c.loop, c.epRes)
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *Endpoints) Run(ctx context.Context) error {
	if c.watches.start(ctx) {
		c.loop.Run(ctx, 2)
	}
	return nil
}

// serviceWatches enqueue a service on changes of itself, of the pods in its
// namespace, and of the objects named after it (its Endpoints or slices), from the
// shared caches the controller reads.
type serviceWatches struct {
	inf             *Informers
	own             bool // the informers are the controller's own, to run
	svc, pods, objs *Cache
}

func newServiceWatches(cfg EndpointsConfig, l *Loop, ownRes *apiserver.Resource) *serviceWatches {
	w := &serviceWatches{inf: cfg.Informers}
	if w.inf == nil {
		w.inf, w.own = NewInformers(cfg.API, cfg.Log), true
	}
	reg := cfg.API.Registry()
	w.svc, w.pods, w.objs = w.inf.For(reg.Lookup("", "services")), w.inf.For(reg.Lookup("", "pods")), w.inf.For(ownRes)
	w.svc.OnChange(func(o store.Object) { l.Enqueue(key(o)) })
	w.pods.OnChange(func(o store.Object) {
		for _, s := range w.svc.List(o.GetNamespace(), apiserver.Selector{}) {
			if sel := s.(*corev1.Service).Spec.Selector; len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(o.GetLabels())) {
				l.Enqueue(key(s))
			}
		}
	})
	w.objs.OnChange(func(o store.Object) {
		name := o.GetLabels()["kubernetes.io/service-name"]
		if name == "" && ownRes.Plural == "endpoints" {
			name = o.GetName()
		}
		if name != "" {
			l.Enqueue(o.GetNamespace() + "/" + name)
		}
	})
	return w
}

// start runs the informers if they are the controller's own and waits for the caches
// to fill; false when ctx ended first.
func (w *serviceWatches) start(ctx context.Context) bool {
	if w.own {
		go w.inf.Run(ctx)
	}
	return w.svc.WaitSynced(ctx) && w.pods.WaitSynced(ctx) && w.objs.WaitSynced(ctx)
}

func (c *Endpoints) reconcile(ctx context.Context, k string) error {
	ns, name := splitKey(k)
	obj, err := c.api.Get(c.svcRes, ns, name)
	if apierrors.IsNotFound(err) {
		return c.deleteManaged(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	svc := obj.(*corev1.Service)
	if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil // selector-less services' Endpoints belong to their users
	}
	pods, trigger, err := selectedPods(c.watches.pods, svc)
	if err != nil {
		return err
	}
	want := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: ns, Labels: map[string]string{},
		Annotations: map[string]string{triggerAnnotation: trigger.UTC().Format(time.RFC3339Nano)}},
		Subsets: endpointSubsets(svc, pods)}
	for k, v := range svc.Labels {
		want.Labels[k] = v
	}
	cur, err := c.api.Get(c.epRes, ns, name)
	if apierrors.IsNotFound(err) {
		_, err = c.api.Create(ctx, c.epRes, ns, want, false)
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) || apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	ep := cur.(*corev1.Endpoints)
	if apiequality.Semantic.DeepEqual(ep.Subsets, want.Subsets) && apiequality.Semantic.DeepEqual(ep.Labels, want.Labels) {
		return nil // unchanged: keep the old trigger time
	}
	_, err = c.api.Update(ctx, c.epRes, ns, name, "", func(cur store.Object) (store.Object, error) {
		e := cur.(*corev1.Endpoints)
		e.Subsets, e.Labels = want.Subsets, want.Labels
		if e.Annotations == nil {
			e.Annotations = map[string]string{}
		}
		e.Annotations[triggerAnnotation] = want.Annotations[triggerAnnotation]
		return e, nil
	}, false)
	return err
}

// endpointSubsets groups addresses by the ports they serve, as Kubernetes' repacking
// does: one subset per distinct port set, addresses sorted.
func endpointSubsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	type group struct {
		ports           []corev1.EndpointPort
		ready, notReady []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	var order []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil && !svc.Spec.PublishNotReadyAddresses {
			continue // Endpoints leave terminating pods out (slices keep them, marked)
		}
		var ports []corev1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			if n, ok := targetPort(sp, p); ok {
				ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: n, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
			}
		}
		if len(ports) == 0 {
			continue
		}
		gk := fmt.Sprint(ports)
		g := groups[gk]
		if g == nil {
			g = &group{ports: ports}
			groups[gk] = g
			order = append(order, gk)
		}
		addr := corev1.EndpointAddress{IP: p.Status.PodIP, Hostname: endpointHostname(p, svc), NodeName: strPtr(p.Spec.NodeName),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
		if podServes(p, svc) {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	sort.Strings(order)
	var subsets []corev1.EndpointSubset
	for _, gk := range order {
		g := groups[gk]
		subsets = append(subsets, corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return subsets
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (c *Endpoints) deleteManaged(ctx context.Context, ns, name string) error {
	obj, err := c.api.Get(c.epRes, ns, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.GetAnnotations()[triggerAnnotation] == "" {
		return nil // not one of ours (we always set the trigger time)
	}
	_, _, err = c.api.Delete(ctx, c.epRes, ns, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
