package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
)

// podControl is what every controller that owns pods does the same way, as
// Kubernetes' PodControl and ControllerRefManager: claim the pods it controls
// (adopting matching orphans), and create and delete pods with their events and the
// expectations that keep it from acting on a cache older than its own writes.
type podControl struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
	expect *expectations
	rec    record.EventRecorder
	kind   schema.GroupVersionKind // of the owners
	// created and deleted word the events (nil: "Created pod: <name>", "Deleted pod: <name>").
	created, deleted func(owner metav1.Object, pod string) string
}

func newPodControl(client kubernetes.Interface, pods corelisters.PodLister, rec record.EventRecorder, kind schema.GroupVersionKind) *podControl {
	return &podControl{client: client, pods: pods, expect: newExpectations(), rec: rec, kind: kind,
		created: func(_ metav1.Object, pod string) string { return "Created pod: " + pod },
		deleted: func(_ metav1.Object, pod string) string { return "Deleted pod: " + pod }}
}

// claim returns the pods owner controls. ok is false while the cache has not caught
// up with the controller's own writes for key: it should not act on them yet.
func (pc *podControl) claim(ctx context.Context, key string, owner metav1.Object, selector *metav1.LabelSelector) (pods []*corev1.Pod, ok bool, err error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, false, nil // invalid selectors never pass validation
	}
	all, err := pc.pods.Pods(owner.GetNamespace()).List(labels.Everything())
	if err != nil {
		return nil, false, err
	}
	pods, err = claim(owner, sel, all, func(p *corev1.Pod) (*corev1.Pod, error) {
		p = p.DeepCopy()
		p.OwnerReferences = append(p.OwnerReferences, *metav1.NewControllerRef(owner, pc.kind))
		return pc.client.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{})
	}, func(p *corev1.Pod) error {
		_, err := pc.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, releasePatch(owner, p.UID), metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return pods, pc.expect.met(key, podPresentIn(pc.pods, owner.GetNamespace())), nil
}

// create makes pod, owned by owner; a terminating namespace is not an error.
func (pc *podControl) create(ctx context.Context, key string, owner interface {
	metav1.Object
	runtime.Object
}, pod *corev1.Pod) error {
	out, err := pc.client.CoreV1().Pods(owner.GetNamespace()).Create(ctx, pod, metav1.CreateOptions{})
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil // the namespace controller is emptying it
	case apierrors.IsAlreadyExists(err) && pod.Name != "":
		return fmt.Errorf("pod %s exists but is not %s's yet: %w", pod.Name, owner.GetName(), ErrRequeue)
	case err != nil:
		pc.rec.Eventf(owner, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("create pod for %s: %w", key, err)
	}
	pc.expect.wrote(key, out)
	pc.rec.Event(owner, corev1.EventTypeNormal, "SuccessfulCreate", pc.created(owner, out.Name))
	return nil
}

// delete removes p (that very pod: uid precondition); gone already is not an error.
func (pc *podControl) delete(ctx context.Context, key string, owner interface {
	metav1.Object
	runtime.Object
}, p *corev1.Pod) error {
	err := pc.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(p.UID))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		pc.expect.deleted(key, p)
		pc.rec.Event(owner, corev1.EventTypeNormal, "SuccessfulDelete", pc.deleted(owner, p.Name))
	}
	return err
}
