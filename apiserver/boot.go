package apiserver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/minicluster/minicluster/store"
)

// Namespaces every cluster has.
var bootNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// Boot creates the objects every cluster starts with; it is safe to repeat.
func (s *Server) Boot(ctx context.Context) error {
	reg := s.api.reg
	for _, name := range bootNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := s.ensure(ctx, reg.Lookup("", "namespaces"), ns); err != nil {
			return err
		}
	}
	for _, role := range defaultClusterRoles() {
		if err := s.ensure(ctx, reg.Lookup(rbacv1.GroupName, "clusterroles"), role); err != nil {
			return err
		}
	}
	// The default class, as k3s has: node-local directories, provisioned on demand.
	local := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: DefaultStorageClass,
		Annotations: map[string]string{isDefaultClassKey: "true"}}, Provisioner: LocalPathProvisioner}
	if err := s.ensure(ctx, reg.Lookup("storage.k8s.io", "storageclasses"), local); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	// Pods reach the API at the pod address (Kubernetes forbids loopback endpoints).
	switch ip := net.ParseIP(host); {
	case s.cfg.PodAddr.IsValid():
		host = s.cfg.PodAddr.String()
	case ip == nil || ip.IsUnspecified():
		host = "127.0.0.1"
	}
	labels := map[string]string{"component": "apiserver", "provider": "kubernetes"}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: nthAddr(s.cfg.ServiceCIDR, 0).String(),
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(port)}}}}
	if err := s.ensure(ctx, reg.Lookup("", "services"), svc); err != nil {
		return err
	}
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: labels},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: host}},
			Ports: []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}}}}}
	if err := s.ensure(ctx, reg.Lookup("", "endpoints"), ep); err != nil {
		return err
	}
	if !s.cfg.ClusterDNS.IsValid() {
		return nil
	}
	// The cluster DNS service, at its well-known address. It has no selector: the daemon
	// serves DNS itself and says where through the service's Endpoints.
	dns := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system",
		Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
		Spec: corev1.ServiceSpec{ClusterIP: s.cfg.ClusterDNS.String(), Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)}}}}
	return s.ensure(ctx, reg.Lookup("", "services"), dns)
}

// ensure creates obj, or, for endpoints, brings an existing one up to date (the
// listen address may have changed between runs).
func (s *Server) ensure(ctx context.Context, r *Resource, obj store.Object) error {
	_, err := s.api.Create(ctx, r, obj.GetNamespace(), obj.DeepCopyObject().(store.Object), false)
	if !apierrors.IsAlreadyExists(err) {
		return wrapBoot(r, obj, err)
	}
	want, ok := obj.(*corev1.Endpoints)
	if !ok {
		return nil
	}
	_, err = s.api.Update(ctx, r, want.Namespace, want.Name, "", func(cur store.Object) (store.Object, error) {
		ep := cur.(*corev1.Endpoints)
		if !apiequality.Semantic.DeepEqual(ep.Subsets, want.Subsets) {
			ep.Subsets = want.Subsets
		}
		return ep, nil
	}, false)
	return wrapBoot(r, obj, err)
}

func wrapBoot(r *Resource, obj store.Object, err error) error {
	if err != nil {
		return fmt.Errorf("ensure %s %s/%s: %w", r.Singular, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// defaultClusterRoles are Kubernetes' user-facing roles (cluster-admin, admin, edit,
// view), over the kinds minicluster serves, so bindings to them mean what they mean.
func defaultClusterRoles() []*rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	write := []string{"create", "update", "patch", "delete", "deletecollection"}
	viewed := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/log", "pods/status", "services", "services/status", "endpoints",
			"configmaps", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "events", "namespaces"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale", "daemonsets", "controllerrevisions"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "networkpolicies"}},
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}},
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}},
	}
	with := func(rules []rbacv1.PolicyRule, verbs []string) []rbacv1.PolicyRule {
		out := make([]rbacv1.PolicyRule, len(rules))
		for i, r := range rules {
			r.Verbs = verbs
			out[i] = r
		}
		return out
	}
	view := with(viewed, read)
	extra := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets", "pods/exec", "pods/attach", "pods/portforward", "pods/eviction", "serviceaccounts/token"}},
	}
	edit := append(with(viewed, append(slices.Clone(read), write...)), with(extra, append(slices.Clone(read), write...))...)
	admin := append(slices.Clone(edit), rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "rolebindings"},
		Verbs: append(slices.Clone(read), write...)})
	role := func(name string, rules []rbacv1.PolicyRule) *rbacv1.ClusterRole {
		return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}}, Rules: rules}
	}
	return []*rbacv1.ClusterRole{
		role("cluster-admin", []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
			{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}}}),
		role("admin", admin), role("edit", edit), role("view", view),
	}
}
