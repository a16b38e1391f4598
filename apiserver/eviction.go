package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/minicluster/minicluster/store"
)

// evict serves POST pods/{name}/eviction (kubectl drain): the pod is deleted unless a
// PodDisruptionBudget that selects it allows no disruption, as kube-apiserver does.
func (h *handler) evict(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	var ev policyv1.Eviction
	if err == nil && isProtobuf(r) {
		if _, _, perr := pbSerializer.Decode(data, nil, &ev); perr != nil {
			err = apierrors.NewBadRequest(fmt.Sprintf("invalid eviction: %v", perr))
		}
	} else if err == nil {
		_, err = decodeInto(data, &ev, directive)
	}
	if err == nil && ev.Name != "" && ev.Name != req.name {
		err = apierrors.NewBadRequest(fmt.Sprintf("name in URL does not match name in Eviction object: %s != %s", req.name, ev.Name))
	}
	if err == nil {
		err = h.api.Evict(r.Context(), req.ns, req.name, ev.DeleteOptions)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, http.StatusCreated, &metav1.Status{Status: metav1.StatusSuccess}, req.out)
}

// errPDBRetry is what a budget at its limit answers: 429, retry later.
func errPDBRetry(name string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause,
		Message: fmt.Sprintf("The disruption budget %s needs more healthy pods to allow the eviction.", name)})
	return err
}

// Evict deletes pod ns/name if the disruption budgets selecting it allow it, taking one
// disruption from the budget first.
func (a *API) Evict(ctx context.Context, ns, name string, opts *metav1.DeleteOptions) error {
	pods := a.reg.Lookup("", "pods")
	obj, err := a.Get(pods, ns, name)
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	// Pods that serve nothing (not yet running, finished, already going) need no budget.
	needsBudget := pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning
	if needsBudget {
		pdbs := a.reg.Lookup("policy", "poddisruptionbudgets")
		matching, _, err := a.List(pdbs, ns, Selector{})
		if err != nil {
			return err
		}
		var budget *policyv1.PodDisruptionBudget
		for _, o := range matching {
			b := o.(*policyv1.PodDisruptionBudget)
			sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			if budget != nil {
				return apierrors.NewInternalError(errors.New("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
			}
			budget = b
		}
		if budget != nil {
			_, err := a.Update(ctx, pdbs, ns, budget.Name, "status", func(cur store.Object) (store.Object, error) {
				b := cur.(*policyv1.PodDisruptionBudget)
				if b.Status.ObservedGeneration < b.Generation || b.Status.DisruptionsAllowed <= 0 {
					return nil, errPDBRetry(b.Name)
				}
				b.Status.DisruptionsAllowed--
				if b.Status.DisruptedPods == nil {
					b.Status.DisruptedPods = map[string]metav1.Time{}
				}
				b.Status.DisruptedPods[name] = metav1.NewTime(time.Now())
				return b, nil
			}, false)
			if err != nil {
				return err
			}
		}
	}
	_, _, err = a.Delete(ctx, pods, ns, name, *opts)
	return err
}
