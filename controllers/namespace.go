package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// NamespaceConfig configures the namespace lifecycle controller.
type NamespaceConfig struct {
	API *apiserver.API
	Log *slog.Logger
}

// Namespace empties a namespace marked for deletion and then removes it by clearing
// its "kubernetes" finalizer, as kube-controller-manager's namespace controller does.
type Namespace struct {
	api  *apiserver.API
	res  *apiserver.Resource
	loop *Loop
}

// NewNamespace builds the controller.
func NewNamespace(cfg NamespaceConfig) (*Namespace, error) {
	if cfg.API == nil {
		return nil, errors.New("namespace controller: no API")
	}
	c := &Namespace{api: cfg.API, res: cfg.API.Registry().Lookup("", "namespaces")}
	c.loop = NewLoop("namespace", cfg.Log, c.reconcile)
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *Namespace) Run(ctx context.Context) error {
	go WatchResource(ctx, c.api, c.res, c.loop.Log(), func(o store.Object) {
		if o.GetDeletionTimestamp() != nil {
			c.loop.Enqueue(o.GetName())
		}
	})
	c.loop.Run(ctx, 1)
	return nil
}

// reconcile deletes everything in a terminating namespace, then finalizes it.
func (c *Namespace) reconcile(ctx context.Context, name string) error {
	obj, err := c.api.Get(c.res, "", name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.GetDeletionTimestamp() == nil {
		return nil
	}
	remaining, err := c.deleteContent(ctx, name)
	if err != nil {
		return err
	}
	if remaining > 0 {
		return fmt.Errorf("namespace %s: %d objects left: %w", name, remaining, ErrRequeue)
	}
	_, err = c.api.Update(ctx, c.res, "", name, "finalize", func(cur store.Object) (store.Object, error) {
		ns := cur.(*corev1.Namespace)
		var keep []corev1.FinalizerName
		for _, f := range ns.Spec.Finalizers {
			if f != corev1.FinalizerKubernetes {
				keep = append(keep, f)
			}
		}
		ns.Spec.Finalizers = keep
		return ns, nil
	}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteContent deletes every namespaced object in ns and counts those still present.
func (c *Namespace) deleteContent(ctx context.Context, ns string) (int, error) {
	remaining := 0
	background := metav1.DeletePropagationBackground
	for _, r := range c.api.Registry().Resources() {
		if !r.Namespaced {
			continue
		}
		objs, _, err := c.api.List(r, ns, apiserver.Selector{})
		if err != nil {
			return 0, err
		}
		for _, o := range objs {
			_, gone, err := c.api.Delete(ctx, r, ns, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
			if err != nil && !apierrors.IsNotFound(err) {
				return 0, err
			}
			if err == nil && !gone {
				remaining++
			}
		}
	}
	return remaining, nil
}
