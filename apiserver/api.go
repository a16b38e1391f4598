package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// API is the typed, in-process face of the API server: the HTTP handlers and the
// controllers both go through it, so every write is defaulted, validated and
// allocated the same way.
type API struct {
	store  *store.Store
	reg    *Registry
	log    *slog.Logger
	tokens *tokenIssuer
}

// NewAPI wraps a store with the registry's semantics.
func NewAPI(s *store.Store, reg *Registry, log *slog.Logger) *API {
	return &API{store: s, reg: reg, log: log}
}

// Registry returns the resource table.
func (a *API) Registry() *Registry { return a.reg }

// Selector restricts lists and watches.
type Selector struct {
	Labels labels.Selector
	Fields fields.Selector
}

// Matches reports whether obj is selected.
func (s Selector) Matches(r *Resource, obj store.Object) bool {
	if s.Labels != nil && !s.Labels.Matches(labels.Set(obj.GetLabels())) {
		return false
	}
	return s.Fields == nil || s.Fields.Matches(r.fieldSet(obj))
}

func (a *API) storeErr(r *Resource, name string, err error) error {
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &status):
		return err
	case errors.Is(err, store.ErrNotFound):
		return apierrors.NewNotFound(r.GroupResource(), name)
	case errors.Is(err, store.ErrExists):
		return apierrors.NewAlreadyExists(r.GroupResource(), name)
	case errors.Is(err, store.ErrConflict):
		return apierrors.NewConflict(r.GroupResource(), name, errors.New(
			"the object has been modified; please apply your changes to the latest version and try again"))
	case errors.Is(err, store.ErrExpired):
		return apierrors.NewResourceExpired(err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError(err.Error(), 1)
	}
	return apierrors.NewInternalError(err)
}

// Get returns one object.
func (a *API) Get(r *Resource, ns, name string) (store.Object, error) {
	obj, err := a.store.Get(r.storage(), ns, name)
	return r.external(obj), a.storeErr(r, name, err)
}

// List returns the selected objects of r in ns (every namespace when empty) and the
// revision the list is consistent with.
func (a *API) List(r *Resource, ns string, sel Selector) ([]store.Object, int64, error) {
	objs, rev, _, err := a.ListPage(r, ns, sel, "", 0)
	return objs, rev, err
}

// ListPage is List from key start on, at most limit objects (0: all); next is where the
// next page starts ("" when none).
func (a *API) ListPage(r *Resource, ns string, sel Selector, start string, limit int) ([]store.Object, int64, string, error) {
	objs, rev, next, err := a.store.ListPage(r.storage(), ns, func(o store.Object) bool { return sel.Matches(r, o) }, start, limit)
	if r.view != nil {
		for i, o := range objs {
			objs[i] = r.external(o)
		}
	}
	return objs, rev, next, a.storeErr(r, "", err)
}

// Watch streams r's changes after rev.
func (a *API) Watch(r *Resource, rev int64) (*store.Watcher, error) {
	w, err := a.store.Watch(r.storage(), rev)
	return w, a.storeErr(r, "", err)
}

// checkNamespace refuses writes into a namespace that is missing or terminating.
func (a *API) checkNamespace(r *Resource, ns string) error {
	if !r.Namespaced {
		return nil
	}
	nsr := a.reg.Lookup("", "namespaces")
	obj, err := a.store.Get(&nsr.Kind, "", ns)
	if errors.Is(err, store.ErrNotFound) {
		return apierrors.NewNotFound(nsr.GroupResource(), ns)
	}
	if err != nil {
		return a.storeErr(nsr, ns, err)
	}
	if obj.GetDeletionTimestamp() != nil {
		err := apierrors.NewForbidden(r.GroupResource(), "", fmt.Errorf(
			"unable to create new content in namespace %s because it is being terminated", ns))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", ns), Field: "metadata.namespace"})
		return err
	}
	return nil
}

func (a *API) invalid(r *Resource, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(r.GVK().GroupKind(), name, errs)
}

func (a *API) validateCreate(r *Resource, obj store.Object) error {
	errs := apivalidation.ValidateObjectMetaAccessor(obj, r.Namespaced, r.nameFn, field.NewPath("metadata"))
	if r.validate != nil {
		errs = append(errs, r.validate(obj, nil)...)
	}
	return a.invalid(r, obj.GetName(), errs)
}

// Create stores a new object in ns.
func (a *API) Create(ctx context.Context, r *Resource, ns string, obj store.Object, dryRun bool) (store.Object, error) {
	if !r.Namespaced {
		ns = ""
	}
	if obj.GetNamespace() != "" && obj.GetNamespace() != ns {
		return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	obj.SetNamespace(ns)
	if obj.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	if err := a.checkNamespace(r, ns); err != nil {
		return nil, err
	}
	generated := obj.GetName() == "" && obj.GetGenerateName() != ""
	// The uid is the server's, and known to the defaults (a Job's selector names it).
	obj.SetUID(types.UID(uuid.NewUUID()))
	prepareCreate(r, obj)
	switch o := obj.(type) {
	case *corev1.Pod:
		if err := a.admitServiceAccount(r, o); err != nil {
			return nil, err
		}
		if err := a.admitRuntimeClass(r, o); err != nil {
			return nil, err
		}
	case *corev1.PersistentVolumeClaim:
		a.admitClaim(o)
	}
	for attempt := 0; ; attempt++ {
		if generated {
			obj.SetName(obj.GetGenerateName() + utilrand.String(5))
		}
		if err := a.validateCreate(r, obj); err != nil {
			return nil, err
		}
		if dryRun {
			return obj, nil
		}
		setTypeMeta(obj)
		out, err := a.store.Create(ctx, r.storage(), r.internal(obj))
		if generated && errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		}
		return r.external(out), a.storeErr(r, obj.GetName(), err)
	}
}

func prepareCreate(r *Resource, obj store.Object) {
	if r.HasSubresource("status") && r.Plural != "namespaces" {
		clearField(obj, "Status")
		if p, ok := obj.(*corev1.Pod); ok {
			p.Status.Phase = corev1.PodPending
		}
	}
	if r.defaults != nil {
		r.defaults(obj)
	}
}

// MutateFunc returns the object an update asks for, given the current one.
type MutateFunc func(cur store.Object) (store.Object, error)

// Update changes ns/name through mutate, applying subresource rules (sub is "",
// "status", "finalize" or "ephemeralcontainers"), defaults and validation; it retries
// on races.
func (a *API) Update(ctx context.Context, r *Resource, ns, name, sub string, mutate MutateFunc, dryRun bool) (store.Object, error) {
	if !r.Namespaced {
		ns = ""
	}
	var result store.Object
	out, err := a.store.Update(ctx, r.storage(), ns, name, func(cur store.Object) (store.Object, error) {
		cur = r.external(cur)
		old := cur.DeepCopyObject().(store.Object)
		next, err := mutate(cur)
		if err != nil {
			return nil, err
		}
		if err := checkIdentity(r, next, ns, name, old); err != nil {
			return nil, err
		}
		next = applySubresource(r, sub, next, old)
		if r.defaults != nil {
			r.defaults(next)
		}
		errs := apivalidation.ValidateObjectMetaAccessorUpdate(next, old, field.NewPath("metadata"))
		if r.validate != nil {
			errs = append(errs, r.validate(next, old)...)
		}
		if err := a.invalid(r, name, errs); err != nil {
			return nil, err
		}
		setTypeMeta(next)
		if dryRun {
			result = next
			return nil, errDryRun
		}
		return r.internal(next), nil
	})
	if errors.Is(err, errDryRun) {
		return result, nil
	}
	return r.external(out), a.storeErr(r, name, err)
}

var errDryRun = errors.New("dry run")

// checkIdentity rejects updates that name another object or carry a stale
// resourceVersion; an empty resourceVersion means an unconditional update.
func checkIdentity(r *Resource, next store.Object, ns, name string, cur store.Object) error {
	if next.GetName() != name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", next.GetName(), name))
	}
	if next.GetNamespace() != "" && next.GetNamespace() != ns {
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	next.SetNamespace(ns)
	if rv := next.GetResourceVersion(); rv != "" && rv != cur.GetResourceVersion() {
		if _, err := strconv.ParseInt(rv, 10, 64); err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersion %q", rv))
		}
		return store.ErrConflict
	}
	next.SetResourceVersion(cur.GetResourceVersion())
	// System fields a client need not send back (Kubernetes' rest.BeforeUpdate).
	if next.GetUID() == "" {
		next.SetUID(cur.GetUID())
	}
	next.SetCreationTimestamp(cur.GetCreationTimestamp())
	next.SetDeletionTimestamp(cur.GetDeletionTimestamp())
	next.SetDeletionGracePeriodSeconds(cur.GetDeletionGracePeriodSeconds())
	return nil
}

// applySubresource builds the object to store from what was asked (next) and what is
// stored (old): the main resource keeps status; status keeps everything but status;
// a namespace's finalize keeps everything but spec.finalizers.
func applySubresource(r *Resource, sub string, next, old store.Object) store.Object {
	switch sub {
	case "status":
		// Everything but spec may change, metadata included (Kubernetes' status
		// strategies); a pod's owners stay, and a deployment's labels.
		copyField(next, old, "Spec")
		switch {
		case r.Plural == "pods":
			next.SetOwnerReferences(old.GetOwnerReferences())
		case r.Plural == "deployments" && r.Group == "apps": // deploymentStatusStrategy
			next.SetLabels(old.GetLabels())
		}
		next.SetGeneration(old.GetGeneration())
		if next.GetManagedFields() == nil {
			next.SetManagedFields(old.GetManagedFields())
		}
		return next
	case "finalize":
		out := old.DeepCopyObject().(store.Object)
		copyField(out, next, "Spec")
		return out
	case "ephemeralcontainers":
		out := old.DeepCopyObject().(*corev1.Pod)
		out.Spec.EphemeralContainers = next.(*corev1.Pod).Spec.EphemeralContainers
		return out
	}
	if r.prepareUpdate != nil {
		r.prepareUpdate(next, old)
	}
	next.SetGeneration(old.GetGeneration())
	if s := structField(next, "Spec"); s.IsValid() && !apiequality.Semantic.DeepEqual(s.Interface(), structField(old, "Spec").Interface()) {
		next.SetGeneration(old.GetGeneration() + 1)
	}
	if next.GetManagedFields() == nil {
		next.SetManagedFields(old.GetManagedFields())
	}
	return next
}

// Delete removes ns/name (or marks it, while finalizers remain) and reports whether it is gone.
func (a *API) Delete(ctx context.Context, r *Resource, ns, name string, opts metav1.DeleteOptions) (store.Object, bool, error) {
	if !r.Namespaced {
		ns = ""
	}
	pre := store.Preconditions{}
	if p := opts.Preconditions; p != nil {
		if p.UID != nil {
			pre.UID = string(*p.UID)
		}
		if p.ResourceVersion != nil {
			pre.ResourceVersion = *p.ResourceVersion
		}
	}
	if len(opts.DryRun) > 0 {
		obj, err := a.Get(r, ns, name)
		return obj, err == nil, err
	}
	if r.Plural == "pods" {
		if last, done, err := a.markPodTerminating(ctx, r, ns, name, opts); done || err != nil {
			_, getErr := a.Get(r, ns, name)
			return last, apierrors.IsNotFound(getErr), err
		}
	}
	if f := propagationFinalizer(opts.PropagationPolicy); f != "" {
		_, err := a.store.Update(ctx, r.storage(), ns, name, func(cur store.Object) (store.Object, error) {
			if cur.GetDeletionTimestamp() == nil && !slices.Contains(cur.GetFinalizers(), f) {
				cur.SetFinalizers(append(cur.GetFinalizers(), f))
			}
			return cur, nil
		})
		if err != nil {
			return nil, false, a.storeErr(r, name, err)
		}
	}
	obj, gone, err := a.store.Delete(ctx, r.storage(), ns, name, pre)
	if errors.Is(err, store.ErrConflict) {
		return nil, false, apierrors.NewConflict(r.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %s, ResourceVersion in precondition: %s", pre.UID, pre.ResourceVersion))
	}
	return r.external(obj), gone, a.storeErr(r, name, err)
}

// markPodTerminating starts a graceful deletion: the pod gets deletionTimestamp and
// deletionGracePeriodSeconds and stays until its node has stopped it and deletes it
// with grace 0 (or the grace is cut short). A pod no node runs goes at once. It reports
// whether it handled the delete.
func (a *API) markPodTerminating(ctx context.Context, r *Resource, ns, name string, opts metav1.DeleteOptions) (store.Object, bool, error) {
	obj, err := a.store.Get(r.storage(), ns, name)
	if err != nil {
		return nil, false, nil // the plain path reports it
	}
	pod := obj.(*corev1.Pod)
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		grace = 0
	}
	if cur := pod.DeletionGracePeriodSeconds; cur != nil && grace >= *cur {
		return pod, true, nil // already terminating at least as fast
	}
	if pod.DeletionTimestamp == nil && grace == 0 {
		return nil, false, nil // nothing to wait for: the plain path deletes it
	}
	last, err := a.store.Update(ctx, r.storage(), ns, name, func(cur store.Object) (store.Object, error) {
		if p := opts.Preconditions; p != nil && p.UID != nil && *p.UID != cur.GetUID() {
			return nil, store.ErrConflict
		}
		when := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second).Truncate(time.Second))
		cur.SetDeletionTimestamp(&when)
		cur.SetDeletionGracePeriodSeconds(&grace)
		if f := propagationFinalizer(opts.PropagationPolicy); f != "" && !slices.Contains(cur.GetFinalizers(), f) {
			cur.SetFinalizers(append(cur.GetFinalizers(), f))
		}
		return cur, nil
	})
	return last, true, a.storeErr(r, name, err)
}

func propagationFinalizer(p *metav1.DeletionPropagation) string {
	if p == nil {
		return ""
	}
	switch *p {
	case metav1.DeletePropagationForeground:
		return metav1.FinalizerDeleteDependents
	case metav1.DeletePropagationOrphan:
		return metav1.FinalizerOrphanDependents
	}
	return ""
}
