package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// A DaemonSet keeps its history as kube-controller-manager's daemon set controller
// does (constructHistory, dedupCurHistories, cleanupHistory), in ControllerRevisions
// kept by the shared revisionHistory (history.go). Its pods carry the current
// revision's hash; a pod is up to date when it carries that hash or the set's
// template generation.

// templateGenerationLabel is the template generation a daemon pod was made from.
const templateGenerationLabel = "pod-template-generation"

func dsOwner(ds *appsv1.DaemonSet) revisionOwner {
	return revisionOwner{obj: ds, kind: dsKind, selector: ds.Spec.Selector, template: &ds.Spec.Template}
}

// templateGeneration is what a pod of ds's template is labelled with: the annotation
// the API server keeps (bumped on template changes only) when it is there, else the
// set's generation, which changes with the template too.
func templateGeneration(ds *appsv1.DaemonSet) string {
	if g, ok := ds.Annotations[appsv1.DeprecatedTemplateGeneration]; ok {
		return g
	}
	if ds.Generation > 0 {
		return strconv.FormatInt(ds.Generation, 10)
	}
	return ""
}

// podUpdated says whether p is of ds's current template (IsPodUpdated).
func podUpdated(p *corev1.Pod, hash, generation string) bool {
	return p.Labels[revisionHashLabel] == hash || generation != "" && p.Labels[templateGenerationLabel] == generation
}

// constructHistory is ds's current revision and its older ones. The current one is the
// one holding spec.template, renumbered as the newest when older ones are newer, or a
// new one; of several that hold it, the newest is kept (dedup). collisions is the
// count to record in the status.
func (c *DaemonSet) constructHistory(ctx context.Context, ds *appsv1.DaemonSet, pods []*corev1.Pod) (cur *appsv1.ControllerRevision, old []*appsv1.ControllerRevision, collisions int32, err error) {
	collisions = ptr.Deref(ds.Status.CollisionCount, 0)
	revs, err := c.history.list(ctx, dsOwner(ds))
	if err != nil {
		return nil, nil, collisions, err
	}
	data, err := revisionData(&ds.Spec.Template)
	if err != nil {
		return nil, nil, collisions, fmt.Errorf("encode the template of %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	var current []*appsv1.ControllerRevision
	for _, r := range revs {
		if r, err = c.ensureHashLabel(ctx, r); err != nil {
			return nil, nil, collisions, err
		}
		if bytes.Equal(r.Data.Raw, data) {
			current = append(current, r)
		} else {
			old = append(old, r)
		}
	}
	next := nextRevision(old)
	if len(current) == 0 {
		want, err := newRevision(dsOwner(ds), next, collisions)
		if err == nil {
			cur, err = c.history.create(ctx, dsOwner(ds), want, &collisions)
		}
		return cur, old, collisions, err
	}
	if cur, err = c.dedup(ctx, pods, current); err == nil {
		cur, err = c.history.renumber(ctx, cur, next)
	}
	return cur, old, collisions, err
}

// ensureHashLabel gives a revision without the hash label its name as one, as
// constructHistory does for revisions made before the label was.
func (c *DaemonSet) ensureHashLabel(ctx context.Context, r *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	if _, ok := r.Labels[revisionHashLabel]; ok {
		return r, nil
	}
	next := r.DeepCopy()
	next.Labels = maps.Clone(next.Labels)
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	next.Labels[revisionHashLabel] = next.Name
	out, err := c.client.AppsV1().ControllerRevisions(r.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("label revision %s: %w", r.Name, err)
	}
	return out, nil
}

// dedup keeps the newest of the revisions that all hold the current template: pods
// labelled with another's hash are relabelled (in pods too), and the others deleted
// (dedupCurHistories).
func (c *DaemonSet) dedup(ctx context.Context, pods []*corev1.Pod, current []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	keep := current[len(current)-1] // the newest: revisions are listed oldest first
	if len(current) == 1 {
		return keep, nil
	}
	hash := keep.Labels[revisionHashLabel]
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{revisionHashLabel: hash}}})
	if err != nil {
		return nil, err
	}
	for i, p := range pods {
		if p.Labels[revisionHashLabel] == hash {
			continue
		}
		out, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return nil, fmt.Errorf("relabel pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		pods[i] = out
	}
	return keep, c.history.prune(ctx, current[:len(current)-1], 0, nil)
}

// cleanupHistory deletes the oldest of old beyond spec.revisionHistoryLimit whose hash
// no pod of the set carries, terminating ones included (cleanupHistory).
func (c *DaemonSet) cleanupHistory(ctx context.Context, ds *appsv1.DaemonSet, pods []*corev1.Pod, old []*appsv1.ControllerRevision) error {
	live := map[string]bool{}
	for _, p := range pods {
		if h := p.Labels[revisionHashLabel]; h != "" {
			live[h] = true
		}
	}
	return c.history.prune(ctx, old, int(ptr.Deref(ds.Spec.RevisionHistoryLimit, 10)), func(r *appsv1.ControllerRevision) bool {
		return live[r.Labels[revisionHashLabel]]
	})
}

// revisionHandler wakes the daemon sets a revision event concerns, as the daemon set
// controller's addHistory, updateHistory and deleteHistory do: the controller of a
// revision changed or deleted, and the sets that might adopt an orphan. A revision
// made for a set wakes nothing; the set made it or will see it on its next pass.
func (c *DaemonSet) revisionHandler() cache.ResourceEventHandler {
	owner := func(r *appsv1.ControllerRevision, ref *metav1.OwnerReference) {
		if ref != nil && ref.Kind == dsKind.Kind {
			c.loop.Enqueue(r.Namespace + "/" + ref.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if r, ok := obj.(*appsv1.ControllerRevision); ok && metav1.GetControllerOf(r) == nil {
				c.enqueueAdopters(r)
			}
		},
		UpdateFunc: func(oldObj, curObj any) {
			o, ok1 := oldObj.(*appsv1.ControllerRevision)
			r, ok2 := curObj.(*appsv1.ControllerRevision)
			if !ok1 || !ok2 || o.ResourceVersion == r.ResourceVersion {
				return
			}
			oldRef, ref := metav1.GetControllerOf(o), metav1.GetControllerOf(r)
			if oldRef != nil && (ref == nil || oldRef.UID != ref.UID) {
				owner(o, oldRef)
			}
			if ref != nil {
				owner(r, ref)
			} else if oldRef != nil || !maps.Equal(o.Labels, r.Labels) {
				c.enqueueAdopters(r)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if r, ok := obj.(*appsv1.ControllerRevision); ok {
				owner(r, metav1.GetControllerOf(r))
			}
		},
	}
}

// enqueueAdopters enqueues the sets in r's namespace whose selector matches it.
func (c *DaemonSet) enqueueAdopters(r *appsv1.ControllerRevision) {
	sets, _ := c.sets.DaemonSets(r.Namespace).List(labels.Everything())
	for _, ds := range sets {
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(r.Labels)) {
			c.loop.EnqueueObject(ds)
		}
	}
}
