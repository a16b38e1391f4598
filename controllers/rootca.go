package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// RootCAConfig configures the root CA publisher.
type RootCAConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// CAFile is the cluster CA's certificate (PEM), read when published: the API server
	// writes it at its first start.
	CAFile string
	Log    *slog.Logger
}

// RootCAName is the ConfigMap every namespace gets with the cluster CA, as
// kube-controller-manager's root-ca-cert-publisher makes it; pods trust the API with it.
const RootCAName = "kube-root-ca.crt"

// RootCA keeps the kube-root-ca.crt ConfigMap in every active namespace, holding the
// cluster CA under ca.crt, and puts it back when changed or deleted.
type RootCA struct {
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	synced     []cache.InformerSynced
	caFile     string
	loop       *Loop
}

// NewRootCA builds the controller.
func NewRootCA(cfg RootCAConfig) *RootCA {
	ns, cm := cfg.Informers.Core().V1().Namespaces(), cfg.Informers.Core().V1().ConfigMaps()
	c := &RootCA{client: cfg.Client, namespaces: ns.Lister(), configMaps: cm.Lister(), caFile: cfg.CAFile,
		synced: []cache.InformerSynced{ns.Informer().HasSynced, cm.Informer().HasSynced}}
	c.loop = NewLoop("root-ca-publisher", cfg.Log, c.reconcile)
	ns.Informer().AddEventHandler(c.loop.Handler())
	enqueue := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if m, ok := obj.(*corev1.ConfigMap); ok && m.Name == RootCAName {
			c.loop.Enqueue(m.Namespace)
		}
	}
	cm.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *RootCA) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

func (c *RootCA) reconcile(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || ns.Status.Phase != corev1.NamespaceActive {
		return err
	}
	ca, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("cluster CA not written yet: %w: %w", err, ErrRequeue)
	}
	want := map[string]string{"ca.crt": string(ca)}
	cur, err := c.configMaps.ConfigMaps(name).Get(RootCAName)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.client.CoreV1().ConfigMaps(name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RootCAName,
			Annotations: map[string]string{"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
			Data: want}, metav1.CreateOptions{})
	case err != nil:
		return err
	case cur.Data["ca.crt"] != want["ca.crt"] || len(cur.Data) != 1:
		next := cur.DeepCopy()
		next.Data = want
		_, err = c.client.CoreV1().ConfigMaps(name).Update(ctx, next, metav1.UpdateOptions{})
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil // the cache catches up and brings it back if needed
	}
	return err
}
