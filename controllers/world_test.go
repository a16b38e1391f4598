package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// world runs the controllers by hand against client-go's fake clientset: every
// reconcile is called directly, and the informers' caches are filled from the fake's
// objects synchronously (sync) — no goroutines, no polling, no database. The fake
// stands in for what the controllers rely on of the API server: names from
// generateName, UIDs, resourceVersions, and deletions that wait for finalizers.
type world struct {
	t         *testing.T
	ctx       context.Context
	client    *fake.Clientset
	dynamic   *dynamicfake.FakeDynamicClient
	informers informers.SharedInformerFactory
	events    *record.FakeRecorder
	rv        atomic.Int64

	d      *Deployment
	rs     *ReplicaSet
	gc     *GarbageCollector
	ep     *Endpoints
	slices *EndpointSlices
	ns     *Namespace
	sched  *Scheduler
	// podExpect are further controllers' expectations fed the pods the caches hold.
	podExpect []*expectations
}

// worldKinds are the kinds the world's informers cache, with their resources.
var worldKinds = []struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}{
	{corev1.SchemeGroupVersion.WithResource("pods"), "Pod", true},
	{corev1.SchemeGroupVersion.WithResource("services"), "Service", true},
	{corev1.SchemeGroupVersion.WithResource("endpoints"), "Endpoints", true},
	{corev1.SchemeGroupVersion.WithResource("namespaces"), "Namespace", false},
	{corev1.SchemeGroupVersion.WithResource("nodes"), "Node", false},
	{corev1.SchemeGroupVersion.WithResource("serviceaccounts"), "ServiceAccount", true},
	{appsv1.SchemeGroupVersion.WithResource("deployments"), "Deployment", true},
	{appsv1.SchemeGroupVersion.WithResource("replicasets"), "ReplicaSet", true},
	{discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), "EndpointSlice", true},
	{batchv1.SchemeGroupVersion.WithResource("jobs"), "Job", true},
	{appsv1.SchemeGroupVersion.WithResource("daemonsets"), "DaemonSet", true},
	{appsv1.SchemeGroupVersion.WithResource("statefulsets"), "StatefulSet", true},
	{appsv1.SchemeGroupVersion.WithResource("controllerrevisions"), "ControllerRevision", true},
	{batchv1.SchemeGroupVersion.WithResource("cronjobs"), "CronJob", true},
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), client: fake.NewSimpleClientset(), events: record.NewFakeRecorder(1000)}
	tracker := w.client.Tracker()
	w.client.PrependReactor("create", "*", w.create)
	w.client.PrependReactor("create", "pods", w.bind)
	// An update or patch stamps the object; one that takes the last finalizer from an
	// object being deleted deletes it.
	written := func(a clienttesting.Action) (bool, runtime.Object, error) {
		handled, obj, err := clienttesting.ObjectReaction(tracker)(a)
		if err != nil || obj == nil {
			return handled, obj, err
		}
		w.stamp(obj)
		if m, _ := meta.Accessor(obj); m.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) == 0 && !heldBySpec(obj) {
			return true, obj, tracker.Delete(a.GetResource(), a.GetNamespace(), m.GetName())
		}
		return true, obj, tracker.Update(a.GetResource(), obj, a.GetNamespace())
	}
	w.client.PrependReactor("update", "*", written)
	w.client.PrependReactor("patch", "*", written)
	w.client.PrependReactor("delete", "*", w.delete)
	w.dynamic = dynamicfake.NewSimpleDynamicClient(scheme.Scheme)
	w.dynamic.PrependReactor("*", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		obj, err := w.client.Invokes(a, nil) // one store for the typed and the dynamic client
		if obj == nil || err != nil {
			return true, nil, err
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		gvk, _, _ := scheme.Scheme.ObjectKinds(obj)
		out := &unstructured.Unstructured{Object: u}
		out.SetGroupVersionKind(gvk[0])
		return true, out, err
	})
	var resources []*metav1.APIResourceList
	for _, k := range worldKinds {
		gv := k.gvr.GroupVersion().String()
		i := slices.IndexFunc(resources, func(l *metav1.APIResourceList) bool { return l.GroupVersion == gv })
		if i < 0 {
			resources, i = append(resources, &metav1.APIResourceList{GroupVersion: gv}), len(resources)
		}
		resources[i].APIResources = append(resources[i].APIResources, metav1.APIResource{Name: k.gvr.Resource, Kind: k.kind,
			Namespaced: k.namespaced, Verbs: metav1.Verbs{"create", "delete", "get", "list", "patch", "update", "watch"}})
	}
	w.client.Discovery().(*fakediscovery.FakeDiscovery).Resources = resources
	w.informers = informers.NewSharedInformerFactory(w.client, 0)
	workload := WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events}
	w.d, w.rs = NewDeployment(workload), NewReplicaSet(workload)
	w.gc = NewGarbageCollector(GCConfig{Discovery: w.client.Discovery(), Dynamic: w.dynamic, Informers: w.informers})
	if err := w.gc.discover(); err != nil {
		t.Fatal(err)
	}
	endpoints := EndpointsConfig{Client: w.client, Informers: w.informers, MaxEndpointsPerSlice: 100}
	w.ep = NewEndpoints(endpoints)
	var err error
	if w.slices, err = NewEndpointSlices(endpoints); err != nil {
		t.Fatal(err)
	}
	w.ns = NewNamespace(NamespaceConfig{Client: w.client, Dynamic: w.dynamic, Informers: w.informers})
	w.sched = NewScheduler(SchedulerConfig{Client: w.client, Informers: w.informers, NodeName: "n1", Recorder: w.events})
	w.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	return w
}

// stamp gives a written object the next resourceVersion, as the API server does.
func (w *world) stamp(obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(w.rv.Add(1), 10))
	}
}

func (w *world) create(a clienttesting.Action) (bool, runtime.Object, error) {
	obj := a.(clienttesting.CreateAction).GetObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return false, nil, nil
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + utilrand.String(5))
	}
	if m.GetUID() == "" {
		m.SetUID(types.UID(fmt.Sprintf("uid-%d", w.rv.Load()+1)))
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(metav1.NewTime(time.Now().Add(time.Duration(w.rv.Load()) * time.Millisecond)))
	}
	w.stamp(obj)
	return false, nil, nil
}

// bind assigns a pod to the Binding's node once, as pods/binding does.
func (w *world) bind(a clienttesting.Action) (bool, runtime.Object, error) {
	if a.GetSubresource() != "binding" {
		return false, nil, nil
	}
	b := a.(clienttesting.CreateAction).GetObject().(*corev1.Binding)
	obj, err := w.client.Tracker().Get(a.GetResource(), a.GetNamespace(), b.Name)
	if err != nil {
		return true, nil, err
	}
	pod := obj.(*corev1.Pod).DeepCopy()
	if pod.Spec.NodeName != "" {
		return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), b.Name, errors.New("already assigned"))
	}
	pod.Spec.NodeName = b.Target.Name
	w.stamp(pod)
	return true, b, w.client.Tracker().Update(a.GetResource(), pod, a.GetNamespace())
}

// delete removes an object, or marks it while finalizers hold it (adding the
// garbage collector's for the Foreground and Orphan policies), as the API server does.
func (w *world) delete(a clienttesting.Action) (bool, runtime.Object, error) {
	d := a.(clienttesting.DeleteAction)
	obj, err := w.client.Tracker().Get(d.GetResource(), d.GetNamespace(), d.GetName())
	if err != nil {
		return true, nil, err
	}
	m, _ := meta.Accessor(obj)
	if p := d.GetDeleteOptions().Preconditions; p != nil && p.UID != nil && *p.UID != m.GetUID() {
		return true, nil, apierrors.NewConflict(d.GetResource().GroupResource(), d.GetName(), errors.New("precondition failed"))
	}
	finalizers := m.GetFinalizers()
	if heldBySpec(obj) {
		finalizers = append(finalizers, "spec")
	}
	if p := d.GetDeleteOptions().PropagationPolicy; p != nil && *p == metav1.DeletePropagationForeground {
		finalizers = append(finalizers, metav1.FinalizerDeleteDependents)
	} else if p != nil && *p == metav1.DeletePropagationOrphan {
		finalizers = append(finalizers, metav1.FinalizerOrphanDependents)
	}
	if len(finalizers) == 0 {
		return false, nil, nil // the tracker removes it
	}
	if m.GetDeletionTimestamp() == nil {
		now := metav1.Now()
		m.SetDeletionTimestamp(&now)
		m.SetFinalizers(slices.DeleteFunc(slices.Compact(finalizers), func(f string) bool { return f == "spec" }))
		w.stamp(obj)
	}
	return true, obj, w.client.Tracker().Update(d.GetResource(), obj, d.GetNamespace())
}

// heldBySpec: a namespace waits for its spec.finalizers too.
func heldBySpec(obj runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}

// apply creates obj (in default, when namespaced and without a namespace).
func (w *world) apply(obj runtime.Object) {
	w.t.Helper()
	m, _ := meta.Accessor(obj)
	gvk, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		w.t.Fatal(err)
	}
	gvr, ns := w.resourceOf(gvk[0].Kind), m.GetNamespace()
	if ns == "" && w.namespaced(gvk[0].Kind) {
		ns = metav1.NamespaceDefault
		m.SetNamespace(ns)
	}
	w.create(clienttesting.NewCreateAction(gvr, ns, obj))
	if err := w.client.Tracker().Create(gvr, obj, ns); err != nil {
		w.t.Fatal(err)
	}
}

// update changes an object as a user would.
func (w *world) update(obj runtime.Object) {
	w.t.Helper()
	m, _ := meta.Accessor(obj)
	gvk, _, _ := scheme.Scheme.ObjectKinds(obj)
	w.stamp(obj)
	if err := w.client.Tracker().Update(w.resourceOf(gvk[0].Kind), obj, m.GetNamespace()); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) namespaced(kind string) bool {
	for _, k := range worldKinds {
		if k.kind == kind {
			return k.namespaced
		}
	}
	return true
}

func (w *world) resourceOf(kind string) schema.GroupVersionResource {
	for _, k := range worldKinds {
		if k.kind == kind {
			return k.gvr
		}
	}
	w.t.Fatalf("no resource for kind %s", kind)
	return schema.GroupVersionResource{}
}

// list returns every object of a resource, in name order.
func list[T runtime.Object](w *world, resource string) []T {
	w.t.Helper()
	for _, k := range worldKinds {
		if k.gvr.Resource != resource {
			continue
		}
		gvk := k.gvr.GroupVersion().WithKind(k.kind)
		l, err := w.client.Tracker().List(k.gvr, gvk, "")
		if err != nil {
			w.t.Fatal(err)
		}
		items, _ := meta.ExtractList(l)
		out := make([]T, 0, len(items))
		for _, o := range items {
			out = append(out, o.(T))
		}
		sort.Slice(out, func(i, j int) bool {
			a, _ := meta.Accessor(out[i])
			b, _ := meta.Accessor(out[j])
			return a.GetName() < b.GetName()
		})
		return out
	}
	w.t.Fatalf("no resource %s", resource)
	return nil
}

func (w *world) pods() []*corev1.Pod               { return list[*corev1.Pod](w, "pods") }
func (w *world) replicaSets() []*appsv1.ReplicaSet { return list[*appsv1.ReplicaSet](w, "replicasets") }
func (w *world) deployments() []*appsv1.Deployment { return list[*appsv1.Deployment](w, "deployments") }
func (w *world) endpoints() []*corev1.Endpoints    { return list[*corev1.Endpoints](w, "endpoints") }
func (w *world) allSlices() []*discoveryv1.EndpointSlice {
	return list[*discoveryv1.EndpointSlice](w, "endpointslices")
}

// sync fills every informer's cache with what the fake holds now, and tells the
// controllers' expectations what their informers would have delivered.
func (w *world) sync() {
	w.t.Helper()
	for _, k := range worldKinds {
		inf, err := w.informers.ForResource(k.gvr)
		if err != nil {
			w.t.Fatal(err)
		}
		l, err := w.client.Tracker().List(k.gvr, k.gvr.GroupVersion().WithKind(k.kind), "")
		if err != nil {
			w.t.Fatal(err)
		}
		objs, _ := meta.ExtractList(l)
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = o
			switch k.kind {
			case "Pod":
				w.rs.pc.expect.observe(o)
				for _, e := range w.podExpect {
					e.observe(o)
				}
			case "EndpointSlice":
				w.slices.expect.observe(o)
			}
		}
		if err := inf.Informer().GetStore().Replace(items, ""); err != nil {
			w.t.Fatal(err)
		}
	}
}

// reconcile syncs the caches, then runs f for key; ErrRequeue is not a failure.
func (w *world) reconcile(f func(context.Context, string) error, key string) {
	w.t.Helper()
	w.sync()
	if err := f(w.ctx, key); err != nil && err != ErrRequeue && !strings.Contains(err.Error(), "requeue") {
		w.t.Fatalf("reconcile %s: %v", key, err)
	}
}

func keyOf(o metav1.Object) string { return cache.MetaObjectToName(o).String() }

// reconcileAll runs the workload controllers and the garbage collector once over
// everything.
func (w *world) reconcileAll() {
	w.t.Helper()
	for _, d := range w.deployments() {
		w.reconcile(w.d.reconcile, keyOf(d))
	}
	for _, rs := range w.replicaSets() {
		w.reconcile(w.rs.reconcile, keyOf(rs))
	}
	w.reconcile(func(ctx context.Context, _ string) error { return w.gc.scan(ctx) }, gcKey)
}

// kubelet marks every pod (or those keep selects) Running and Ready.
func (w *world) kubelet(keep func(*corev1.Pod) bool) {
	w.t.Helper()
	for _, p := range w.pods() {
		if keep != nil && !keep(p) || podReady(p) {
			continue
		}
		p = p.DeepCopy()
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
		w.update(p)
	}
}

// settle runs the controllers and the kubelet until nothing changes, calling check
// after every round.
func (w *world) settle(check func()) {
	w.t.Helper()
	last := int64(-1)
	for range 50 {
		w.reconcileAll()
		w.kubelet(nil)
		if check != nil {
			check()
		}
		if rv := w.rv.Load(); rv == last {
			return
		}
		last = w.rv.Load()
	}
	w.t.Fatal("controllers did not settle in 50 rounds")
}

// recorded returns the events recorded since the last call, as "Type Reason Message".
func (w *world) recorded() []string {
	var out []string
	for {
		select {
		case e := <-w.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}
