package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// bind serves POST pods/{name}/binding, as the scheduler binds a pod to a node: the
// pod gets spec.nodeName and the PodScheduled condition, once; a bound pod is a conflict.
func (h *handler) bind(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	var b corev1.Binding
	if err == nil && isProtobuf(r) {
		if _, _, perr := pbSerializer.Decode(data, nil, &b); perr != nil {
			err = apierrors.NewBadRequest(fmt.Sprintf("invalid binding: %v", perr))
		}
	} else if err == nil {
		_, err = decodeInto(data, &b, directive)
	}
	if err == nil {
		err = h.api.Bind(r.Context(), req.ns, req.name, &b)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, http.StatusCreated, &metav1.Status{Status: metav1.StatusSuccess}, req.out)
}

// Bind assigns pod ns/name to the node b targets.
func (a *API) Bind(ctx context.Context, ns, name string, b *corev1.Binding) error {
	r := a.reg.Lookup("", "pods")
	var errs field.ErrorList
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node"}))
	}
	if b.Target.Name == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), b.Name, errs)
	}
	_, err := a.store.Update(ctx, &r.Kind, ns, name, func(cur store.Object) (store.Object, error) {
		pod := cur.(*corev1.Pod)
		switch {
		case b.UID != "" && b.UID != pod.UID:
			return nil, apierrors.NewConflict(r.GroupResource(), name, fmt.Errorf("the UID in the binding (%s) is not the pod's (%s)", b.UID, pod.UID))
		case pod.DeletionTimestamp != nil:
			return nil, apierrors.NewConflict(r.GroupResource(), name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
		case pod.Spec.NodeName != "":
			return nil, apierrors.NewConflict(r.GroupResource(), name, fmt.Errorf("pod %s is already assigned to node %q", name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		for i := range pod.Status.Conditions {
			if pod.Status.Conditions[i].Type == corev1.PodScheduled {
				pod.Status.Conditions = append(pod.Status.Conditions[:i], pod.Status.Conditions[i+1:]...)
				break
			}
		}
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
		return pod, nil
	})
	return a.storeErr(r, name, err)
}
