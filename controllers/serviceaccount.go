package controllers

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// ServiceAccountConfig configures the service account controller.
type ServiceAccountConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Log       *slog.Logger
}

// ServiceAccounts keeps a "default" ServiceAccount in every active namespace, as
// kube-controller-manager's serviceaccount controller does: made with the namespace,
// made again when deleted.
type ServiceAccounts struct {
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	synced     []cache.InformerSynced
	loop       *Loop
}

// NewServiceAccounts builds the controller.
func NewServiceAccounts(cfg ServiceAccountConfig) *ServiceAccounts {
	ns, sa := cfg.Informers.Core().V1().Namespaces(), cfg.Informers.Core().V1().ServiceAccounts()
	c := &ServiceAccounts{client: cfg.Client, namespaces: ns.Lister(), accounts: sa.Lister(),
		synced: []cache.InformerSynced{ns.Informer().HasSynced, sa.Informer().HasSynced}}
	c.loop = NewLoop("serviceaccount", cfg.Log, c.reconcile)
	ns.Informer().AddEventHandler(c.loop.Handler())
	sa.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if a, ok := obj.(*corev1.ServiceAccount); ok && a.Name == "default" {
			c.loop.Enqueue(a.Namespace)
		}
	}})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *ServiceAccounts) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

func (c *ServiceAccounts) reconcile(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		return nil
	}
	if _, err := c.accounts.ServiceAccounts(name).Get("default"); err == nil {
		return nil
	}
	_, err = c.client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil
	}
	return err
}
