package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/index"
)

// triggerAnnotation records when the change that produced an Endpoints or EndpointSlice
// happened; the proxy measures network programming latency from it.
const triggerAnnotation = corev1.EndpointsLastChangeTriggerTime

// EndpointsConfig configures the Endpoints and EndpointSlice controllers.
type EndpointsConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// MaxEndpointsPerSlice caps a slice (default 100, as Kubernetes).
	MaxEndpointsPerSlice int
	Log                  *slog.Logger
}

// selectedPods returns the pods a service with a selector picks, and the newest change
// among them and the service (the trigger time); nil for services without a selector.
func selectedPods(podLister corelisters.PodLister, svc *corev1.Service) ([]*corev1.Pod, time.Time, error) {
	if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, time.Time{}, nil
	}
	objs, err := podLister.Pods(svc.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return nil, time.Time{}, err
	}
	trigger := svc.CreationTimestamp.Time
	var pods []*corev1.Pod
	for _, p := range objs {
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, p)
		for _, c := range p.Status.Conditions {
			trigger = latest(trigger, c.LastTransitionTime.Time)
		}
		if p.DeletionTimestamp != nil {
			trigger = latest(trigger, p.DeletionTimestamp.Add(-time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 0))*time.Second))
		}
		trigger = latest(trigger, p.CreationTimestamp.Time)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Status.PodIP < pods[j].Status.PodIP })
	return pods, trigger, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
	client    kubernetes.Interface
	watches   *serviceWatches
	endpoints corelisters.EndpointsLister
	loop      *Loop
}

// NewEndpoints builds the Endpoints controller.
func NewEndpoints(cfg EndpointsConfig) *Endpoints {
	epInf := cfg.Informers.Core().V1().Endpoints()
	c := &Endpoints{client: cfg.Client, endpoints: epInf.Lister()}
	c.loop = NewLoop("endpoints", cfg.Log, c.reconcile)
	c.watches = newServiceWatches(cfg, c.loop, epInf.Informer())
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Endpoints) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.watches.synced...)
	return nil
}

// serviceWatches enqueue a service on changes of itself, of the pods it selects (before
// and after the change), and of the objects it owns (its Endpoints or slices).
type serviceWatches struct {
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
}

func newServiceWatches(cfg EndpointsConfig, l *Loop, own cache.SharedIndexInformer) *serviceWatches {
	svcInf, podInf := cfg.Informers.Core().V1().Services(), cfg.Informers.Core().V1().Pods()
	w := &serviceWatches{services: svcInf.Lister(), pods: podInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, own.HasSynced}}
	svcInf.Informer().AddEventHandler(l.Handler())
	podChanged := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		services, _ := w.services.Services(p.Namespace).List(labels.Everything())
		for _, s := range services {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
				l.Enqueue(p.Namespace + "/" + s.Name)
			}
		}
	}
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: podChanged, DeleteFunc: podChanged,
		UpdateFunc: func(old, obj any) { podChanged(old); podChanged(obj) }})
	own.AddEventHandler(index.OnService(func(ns, name string) { l.Enqueue(ns + "/" + name) }))
	return w
}

func (c *Endpoints) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.watches.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return c.deleteManaged(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil // selector-less services' Endpoints belong to their users
	}
	pods, trigger, err := selectedPods(c.watches.pods, svc)
	if err != nil {
		return err
	}
	want := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: ns, Labels: maps.Clone(svc.Labels),
		Annotations: map[string]string{triggerAnnotation: trigger.UTC().Format(time.RFC3339Nano)}},
		Subsets: endpointSubsets(svc, pods)}
	if want.Labels == nil {
		want.Labels = map[string]string{}
	}
	client := c.client.CoreV1().Endpoints(ns)
	cur, err := c.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		if apierrors.IsAlreadyExists(err) {
			return ErrRequeue // made a moment ago; the cache has not seen it yet
		}
		return err
	}
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) && apiequality.Semantic.DeepEqual(cur.Labels, want.Labels) {
		return nil // unchanged: keep the old trigger time
	}
	next := cur.DeepCopy()
	next.Subsets, next.Labels = want.Subsets, want.Labels
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[triggerAnnotation] = want.Annotations[triggerAnnotation]
	_, err = client.Update(ctx, next, metav1.UpdateOptions{})
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
	ep, err := c.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ep.Annotations[triggerAnnotation] == "" {
		return nil // not one of ours (we always set the trigger time)
	}
	err = c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ep.UID))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
