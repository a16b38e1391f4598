package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	"github.com/minicluster/minicluster/store"
)

// Resource is one row of the registry table: everything the generic handlers need to
// serve a kind.
type Resource struct {
	store.Kind
	Group, Version, Kind_, Plural, Singular string
	Namespaced                              bool
	ShortNames, Categories                  []string
	// Subresources served besides the object itself ("status", "scale", ...).
	Subresources []string
	nameFn       apivalidation.ValidateNameFunc
	defaults     func(obj store.Object)
	validate     func(obj, old store.Object) field.ErrorList
	// prepareUpdate carries over what an update of the main resource may not change.
	prepareUpdate func(obj, old store.Object)
	fieldSet      func(obj store.Object) fields.Set
	table         tableDef
	// review makes a create-only resource that stores nothing: it fills in the
	// status of what was sent (see reviews.go).
	review func(ctx context.Context, a *API, obj store.Object)
	// view serves objects stored as another resource's type (see eventsv1.go).
	view *storageView
	// noAge drops the Age column (Roles show "Created At" instead).
	noAge bool
}

// Verbs lists what the resource serves.
func (r *Resource) Verbs() metav1.Verbs {
	if r.review != nil {
		return metav1.Verbs{"create"}
	}
	return verbsAll
}

// GroupVersion of the resource.
func (r *Resource) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: r.Group, Version: r.Version}
}

// GVK of the resource.
func (r *Resource) GVK() schema.GroupVersionKind { return r.GroupVersion().WithKind(r.Kind_) }

// GroupResource of the resource, as named in errors.
func (r *Resource) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.Group, Resource: r.Plural}
}

// HasSubresource reports whether sub is served.
func (r *Resource) HasSubresource(sub string) bool {
	for _, s := range r.Subresources {
		if s == sub {
			return true
		}
	}
	return false
}

// Registry is the table of served resources.
type Registry struct {
	resources []*Resource
}

// Resources lists every served resource in table order.
func (g *Registry) Resources() []*Resource { return g.resources }

// Lookup finds a resource by group and plural name.
func (g *Registry) Lookup(group, plural string) *Resource {
	for _, r := range g.resources {
		if r.Group == group && r.Plural == plural {
			return r
		}
	}
	return nil
}

// Resolve finds a resource by any name a user may type: plural, singular, short name,
// kind, optionally qualified by group ("deployments.apps").
func (g *Registry) Resolve(name string) *Resource {
	name = strings.ToLower(name)
	base, group, qualified := strings.Cut(name, ".")
	for _, r := range g.resources {
		if qualified && r.Group != group {
			continue
		}
		if base == r.Plural || base == r.Singular || base == strings.ToLower(r.Kind_) {
			return r
		}
		for _, s := range r.ShortNames {
			if base == s {
				return r
			}
		}
	}
	return nil
}

// ByGVK finds a resource by group, version and kind.
func (g *Registry) ByGVK(gvk schema.GroupVersionKind) *Resource {
	for _, r := range g.resources {
		if r.GVK() == gvk {
			return r
		}
	}
	return nil
}

// structField returns obj's exported field name, or an invalid Value.
func structField(obj any, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.FieldByName(name)
}

// clearField zeroes obj's field name when it has one.
func clearField(obj any, name string) {
	if f := structField(obj, name); f.IsValid() && f.CanSet() {
		f.Set(reflect.Zero(f.Type()))
	}
}

// copyField sets dst.name = src.name when both have it.
func copyField(dst, src any, name string) {
	d, s := structField(dst, name), structField(src, name)
	if d.IsValid() && s.IsValid() && d.CanSet() {
		d.Set(s)
	}
}

func metaFields(obj store.Object) fields.Set {
	return fields.Set{"metadata.name": obj.GetName(), "metadata.namespace": obj.GetNamespace()}
}

func podFields(obj store.Object) fields.Set {
	p := obj.(*corev1.Pod)
	s := metaFields(obj)
	s["status.phase"] = string(p.Status.Phase)
	s["spec.nodeName"] = p.Spec.NodeName
	s["spec.restartPolicy"] = string(p.Spec.RestartPolicy)
	s["status.podIP"] = p.Status.PodIP
	s["status.nominatedNodeName"] = p.Status.NominatedNodeName
	s["spec.schedulerName"] = p.Spec.SchedulerName
	s["spec.serviceAccountName"] = p.Spec.ServiceAccountName
	s["spec.hostNetwork"] = strconv.FormatBool(p.Spec.HostNetwork)
	return s
}

// The selectable fields of the other kinds, as kube-apiserver's.

func serviceFields(obj store.Object) fields.Set {
	s := metaFields(obj)
	s["spec.clusterIP"], s["spec.type"] = obj.(*corev1.Service).Spec.ClusterIP, string(obj.(*corev1.Service).Spec.Type)
	return s
}

func nodeFields(obj store.Object) fields.Set {
	s := metaFields(obj)
	s["spec.unschedulable"] = strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)
	return s
}

func namespaceFields(obj store.Object) fields.Set {
	s := metaFields(obj)
	s["status.phase"] = string(obj.(*corev1.Namespace).Status.Phase)
	return s
}

func replicaSetFields(obj store.Object) fields.Set {
	s := metaFields(obj)
	s["status.replicas"] = strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))
	return s
}

// eventFields are kube-apiserver's selectable event fields; kubectl describe finds an
// object's events with them.
func eventFields(obj store.Object) fields.Set {
	e := obj.(*corev1.Event)
	s := metaFields(obj)
	o := e.InvolvedObject
	s["involvedObject.kind"], s["involvedObject.namespace"], s["involvedObject.name"] = o.Kind, o.Namespace, o.Name
	s["involvedObject.uid"], s["involvedObject.apiVersion"] = string(o.UID), o.APIVersion
	s["involvedObject.resourceVersion"], s["involvedObject.fieldPath"] = o.ResourceVersion, o.FieldPath
	s["reason"], s["reportingComponent"], s["source"], s["type"] = e.Reason, e.ReportingController, e.Source.Component, e.Type
	return s
}

func newResource[T any, PT interface {
	*T
	store.Object
}](group, version, kind, plural string, namespaced bool) *Resource {
	r := &Resource{Group: group, Version: version, Kind_: kind, Plural: plural,
		Singular: strings.ToLower(kind), Namespaced: namespaced,
		nameFn: apivalidation.NameIsDNSSubdomain, fieldSet: metaFields}
	bucket := group
	if bucket == "" {
		bucket = "core"
	}
	r.Kind.Bucket = bucket + "/" + plural
	r.Kind.New = func() store.Object { return PT(new(T)) }
	return r
}

// NewRegistry builds the table of served resources. The hooks for services allocate
// from alloc.
func NewRegistry(alloc *Allocator) *Registry {
	ns := newResource[corev1.Namespace]("", "v1", "Namespace", "namespaces", false)
	ns.ShortNames = []string{"ns"}
	ns.Subresources = []string{"status", "finalize"}
	ns.nameFn = apivalidation.ValidateNamespaceName
	ns.Finalizing = namespaceFinalizing
	ns.OnMark = func(obj store.Object) { obj.(*corev1.Namespace).Status.Phase = corev1.NamespaceTerminating }
	ns.defaults, ns.validate, ns.table, ns.fieldSet = defaultNamespace, validateNamespace, namespaceTable, namespaceFields

	pod := newResource[corev1.Pod]("", "v1", "Pod", "pods", true)
	pod.ShortNames, pod.Categories = []string{"po"}, []string{"all"}
	pod.Subresources = []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"}
	pod.defaults, pod.validate, pod.table = defaultPod, validatePod, podTable
	pod.prepareUpdate = func(obj, old store.Object) {
		keepStatus(obj, old)
		// Only pods/ephemeralcontainers changes them.
		obj.(*corev1.Pod).Spec.EphemeralContainers = old.(*corev1.Pod).Spec.EphemeralContainers
	}
	pod.fieldSet = podFields
	// A pod being deleted stays while its node stops it (deletionGracePeriodSeconds > 0).
	pod.Finalizing = func(obj store.Object) bool {
		g := obj.GetDeletionGracePeriodSeconds()
		return len(obj.GetFinalizers()) > 0 || (g != nil && *g > 0)
	}

	svc := newResource[corev1.Service]("", "v1", "Service", "services", true)
	svc.ShortNames, svc.Categories = []string{"svc"}, []string{"all"}
	svc.Subresources = []string{"status", "proxy"}
	svc.nameFn = apivalidation.NameIsDNS1035Label
	svc.defaults, svc.validate, svc.table, svc.fieldSet = defaultService, validateService, serviceTable, serviceFields
	svc.prepareUpdate = prepareServiceUpdate
	svc.OnCreate, svc.OnUpdate, svc.OnDelete = alloc.serviceCreate, alloc.serviceUpdate, alloc.serviceDelete

	ep := newResource[corev1.Endpoints]("", "v1", "Endpoints", "endpoints", true)
	ep.Singular = "endpoints"
	ep.ShortNames = []string{"ep"}
	ep.defaults, ep.validate, ep.table = defaultEndpoints, validateEndpoints, endpointsTable

	ev := newResource[corev1.Event]("", "v1", "Event", "events", true)
	ev.ShortNames = []string{"ev"}
	ev.validate, ev.table, ev.fieldSet = validateEvent, eventTable, eventFields

	evv1 := newResource[eventsv1.Event]("events.k8s.io", "v1", "Event", "events", true)
	evv1.ShortNames = []string{"ev"}
	evv1.view = &storageView{kind: &ev.Kind, toStorage: eventFromV1, fromStorage: eventToV1}
	evv1.validate, evv1.table, evv1.fieldSet = validateEventV1, eventsV1Table(), eventsV1Fields

	eps := newResource[discoveryv1.EndpointSlice]("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true)
	eps.defaults, eps.validate, eps.table = defaultEndpointSlice, validateEndpointSlice, endpointSliceTable

	deploy := newResource[appsv1.Deployment]("apps", "v1", "Deployment", "deployments", true)
	deploy.ShortNames, deploy.Categories = []string{"deploy"}, []string{"all"}
	deploy.Subresources = []string{"status", "scale"}
	deploy.defaults, deploy.validate, deploy.table = defaultDeployment, validateDeployment, deploymentTable
	deploy.prepareUpdate = keepStatus

	rs := newResource[appsv1.ReplicaSet]("apps", "v1", "ReplicaSet", "replicasets", true)
	rs.ShortNames, rs.Categories = []string{"rs"}, []string{"all"}
	rs.Subresources = []string{"status", "scale"}
	rs.defaults, rs.validate, rs.table, rs.fieldSet = defaultReplicaSet, validateReplicaSet, replicaSetTable, replicaSetFields
	rs.prepareUpdate = keepStatus

	node := newResource[corev1.Node]("", "v1", "Node", "nodes", false)
	node.ShortNames = []string{"no"}
	node.Subresources = []string{"status", "proxy"}
	node.table, node.fieldSet = nodeTable, nodeFields
	node.prepareUpdate = keepStatus

	// Leases: the node agent's heartbeat, as the kubelet's (kube-node-lease/<node>).
	lease := newResource[coordinationv1.Lease]("coordination.k8s.io", "v1", "Lease", "leases", true)
	lease.table = leaseTable

	cm := newResource[corev1.ConfigMap]("", "v1", "ConfigMap", "configmaps", true)
	cm.ShortNames = []string{"cm"}
	cm.validate, cm.table = validateConfigMap, configMapTable

	secret := newResource[corev1.Secret]("", "v1", "Secret", "secrets", true)
	secret.defaults, secret.validate, secret.table, secret.fieldSet = defaultSecret, validateSecret, secretTable, secretFields

	sa := newResource[corev1.ServiceAccount]("", "v1", "ServiceAccount", "serviceaccounts", true)
	sa.ShortNames, sa.Subresources = []string{"sa"}, []string{"token"}
	sa.validate, sa.table = validateServiceAccount, serviceAccountTable

	ssar := newResource[authorizationv1.SelfSubjectAccessReview]("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false)
	ssar.review, ssar.validate = reviewAccess, validateAccessReview
	ssrr := newResource[authorizationv1.SelfSubjectRulesReview]("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false)
	ssrr.review = reviewRules
	ssr := newResource[authenticationv1.SelfSubjectReview]("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false)
	ssr.review = reviewSelf

	resources := []*Resource{ns, node, pod, svc, ep, ev, cm, secret, sa, eps, deploy, rs, lease, evv1, ssar, ssrr, ssr}
	resources = append(resources, replicationControllerResource(), daemonSetResource(), statefulSetResource())
	resources = append(resources, batchResources()...)
	resources = append(resources, storageResources()...)
	tokenReview := newResource[authenticationv1.TokenReview]("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false)
	tokenReview.review = reviewToken
	resources = append(resources, tokenReview)
	return &Registry{resources: append(resources, registerExtraKinds()...)}
}

// keepStatus makes an update of the main resource leave status alone, as Kubernetes
// does for every resource with a status subresource.
func keepStatus(obj, old store.Object) { copyField(obj, old, "Status") }

func namespaceFinalizing(obj store.Object) bool {
	return len(obj.GetFinalizers()) > 0 || len(obj.(*corev1.Namespace).Spec.Finalizers) > 0
}

// DecodeError is a manifest decoding failure at a field path (empty when unknown).
type DecodeError struct {
	Field string
	Err   error
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Err.Error()
	}
	return e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode turns a manifest document (JSON) into its resource and typed object, as the
// server will decode it, rejecting unknown and duplicate fields.
func (g *Registry) Decode(doc []byte) (*Resource, store.Object, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(doc, &tm); err != nil {
		return nil, nil, &DecodeError{Err: err}
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		missing := "kind"
		if tm.APIVersion == "" {
			missing = "apiVersion"
		}
		return nil, nil, &DecodeError{Field: missing, Err: errors.New("required field is not set")}
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, nil, &DecodeError{Field: "apiVersion", Err: err}
	}
	r := g.ByGVK(gv.WithKind(tm.Kind))
	if r == nil {
		return nil, nil, &DecodeError{Field: "kind", Err: fmt.Errorf("no matches for kind %q in version %q", tm.Kind, tm.APIVersion)}
	}
	obj := r.New()
	strict, err := sigsjson.UnmarshalStrict(doc, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return nil, nil, &DecodeError{Field: te.Field, Err: fmt.Errorf("cannot unmarshal %s into a value of type %s", te.Value, te.Type)}
	}
	if err != nil {
		return nil, nil, &DecodeError{Err: err}
	}
	if len(strict) > 0 {
		return nil, nil, &DecodeError{Field: strictField(strict[0]), Err: strict[0]}
	}
	return r, obj, nil
}

// strictField extracts the path from sigs.k8s.io/json's `unknown field "a.b"` errors.
func strictField(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, `"`); i >= 0 {
		if j := strings.LastIndex(msg, `"`); j > i {
			return msg[i+1 : j]
		}
	}
	return ""
}
