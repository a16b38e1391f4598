package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// Kinds that are stored and served for the clients and manifests that use them, with
// kube-apiserver's tables and the validation that keeps them meaningful. What acts on
// them: RBAC answers the reviews (reviews.go); Ingress and NetworkPolicy are not
// enforced yet and HorizontalPodAutoscalers do not scale (there are no metrics).

func registerExtraKinds() []*Resource {
	ing := newResource[networkingv1.Ingress]("networking.k8s.io", "v1", "Ingress", "ingresses", true)
	ing.ShortNames, ing.Subresources = []string{"ing"}, []string{"status"}
	ing.validate, ing.table, ing.prepareUpdate = validateIngress, ingressTable, keepStatus
	ingClass := newResource[networkingv1.IngressClass]("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false)
	ingClass.table = tableDef{
		{name: "Controller", typ: "string", cell: func(o store.Object) any { return o.(*networkingv1.IngressClass).Spec.Controller }},
		{name: "Parameters", typ: "string", cell: func(o store.Object) any {
			if p := o.(*networkingv1.IngressClass).Spec.Parameters; p != nil {
				return p.Kind + "/" + p.Name
			}
			return "<none>"
		}},
	}
	netpol := newResource[networkingv1.NetworkPolicy]("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true)
	netpol.ShortNames = []string{"netpol"}
	netpol.validate = validateNetworkPolicy
	netpol.defaults = func(o store.Object) { // as Kubernetes defaults them
		np := o.(*networkingv1.NetworkPolicy)
		tcp := func(ps []networkingv1.NetworkPolicyPort) {
			for i := range ps {
				if ps[i].Protocol == nil {
					p := corev1.ProtocolTCP
					ps[i].Protocol = &p
				}
			}
		}
		for _, r := range np.Spec.Ingress {
			tcp(r.Ports)
		}
		for _, r := range np.Spec.Egress {
			tcp(r.Ports)
		}
		if len(np.Spec.PolicyTypes) == 0 {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			}
		}
	}
	netpol.table = tableDef{{name: "Pod-Selector", typ: "string", cell: func(o store.Object) any {
		return selectorString(&o.(*networkingv1.NetworkPolicy).Spec.PodSelector)
	}}}

	pdb := newResource[policyv1.PodDisruptionBudget]("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true)
	pdb.ShortNames, pdb.Subresources = []string{"pdb"}, []string{"status"}
	pdb.validate, pdb.table, pdb.prepareUpdate = validatePDB, pdbTable, keepStatus

	hpa := newResource[autoscalingv2.HorizontalPodAutoscaler]("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true)
	hpa.ShortNames, hpa.Categories, hpa.Subresources = []string{"hpa"}, []string{"all"}, []string{"status"}
	hpa.validate, hpa.table, hpa.prepareUpdate = validateHPA, hpaTable, keepStatus

	role := newResource[rbacv1.Role]("rbac.authorization.k8s.io", "v1", "Role", "roles", true)
	role.validate, role.table, role.noAge = func(o, _ store.Object) field.ErrorList { return validateRules(o.(*rbacv1.Role).Rules) }, createdAtTable, true
	clusterRole := newResource[rbacv1.ClusterRole]("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false)
	clusterRole.validate = func(o, _ store.Object) field.ErrorList { return validateRules(o.(*rbacv1.ClusterRole).Rules) }
	clusterRole.table, clusterRole.noAge = createdAtTable, true
	binding := newResource[rbacv1.RoleBinding]("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true)
	binding.validate = func(o, old store.Object) field.ErrorList {
		b := o.(*rbacv1.RoleBinding)
		var oldRef *rbacv1.RoleRef
		if old != nil {
			oldRef = &old.(*rbacv1.RoleBinding).RoleRef
		}
		return validateBinding(b.RoleRef, oldRef, b.Subjects, true)
	}
	binding.table = bindingTable(func(o store.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
		b := o.(*rbacv1.RoleBinding)
		return b.RoleRef, b.Subjects
	})
	clusterBinding := newResource[rbacv1.ClusterRoleBinding]("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false)
	clusterBinding.validate = func(o, old store.Object) field.ErrorList {
		b := o.(*rbacv1.ClusterRoleBinding)
		var oldRef *rbacv1.RoleRef
		if old != nil {
			oldRef = &old.(*rbacv1.ClusterRoleBinding).RoleRef
		}
		return validateBinding(b.RoleRef, oldRef, b.Subjects, false)
	}
	clusterBinding.table = bindingTable(func(o store.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
		b := o.(*rbacv1.ClusterRoleBinding)
		return b.RoleRef, b.Subjects
	})
	return []*Resource{ing, ingClass, netpol, pdb, hpa, role, clusterRole, binding, clusterBinding, podTemplateResource(), runtimeClassResource(),
		controllerRevisionResource()}
}

func selectorString(s *metav1.LabelSelector) string {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil || sel.Empty() {
		return "<none>"
	}
	return sel.String()
}

var ingressTable = tableDef{
	{name: "Class", typ: "string", cell: func(o store.Object) any {
		if c := o.(*networkingv1.Ingress).Spec.IngressClassName; c != nil {
			return *c
		}
		return "<none>"
	}},
	{name: "Hosts", typ: "string", cell: func(o store.Object) any {
		var hosts []string
		for _, r := range o.(*networkingv1.Ingress).Spec.Rules {
			if r.Host != "" {
				hosts = append(hosts, r.Host)
			}
		}
		if len(hosts) == 0 {
			return "*"
		}
		return firstThree(hosts)
	}},
	{name: "Address", typ: "string", cell: func(o store.Object) any {
		var addrs []string
		for _, i := range o.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
			addrs = append(addrs, i.IP+i.Hostname)
		}
		return strings.Join(addrs, ",")
	}},
	{name: "Ports", typ: "string", cell: func(o store.Object) any {
		if len(o.(*networkingv1.Ingress).Spec.TLS) > 0 {
			return "80, 443"
		}
		return "80"
	}},
}

func validateIngress(obj, _ store.Object) field.ErrorList {
	s := obj.(*networkingv1.Ingress).Spec
	p := field.NewPath("spec")
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		return field.ErrorList{field.Invalid(p, s, "either `defaultBackend` or `rules` must be specified")}
	}
	var errs field.ErrorList
	for i, r := range s.Rules {
		if r.HTTP == nil {
			continue
		}
		for j, path := range r.HTTP.Paths {
			pp := p.Child("rules").Index(i).Child("http", "paths").Index(j)
			if path.PathType == nil {
				errs = append(errs, field.Required(pp.Child("pathType"), "pathType must be specified"))
			}
			if b := path.Backend; (b.Service == nil) == (b.Resource == nil) {
				errs = append(errs, field.Invalid(pp.Child("backend"), b, "cannot set both service and resource backends"))
			}
		}
	}
	return errs
}

var pdbTable = tableDef{
	{name: "Min Available", typ: "string", cell: func(o store.Object) any {
		if v := o.(*policyv1.PodDisruptionBudget).Spec.MinAvailable; v != nil {
			return v.String()
		}
		return "N/A"
	}},
	{name: "Max Unavailable", typ: "string", cell: func(o store.Object) any {
		if v := o.(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable; v != nil {
			return v.String()
		}
		return "N/A"
	}},
	{name: "Allowed Disruptions", typ: "integer", cell: func(o store.Object) any {
		return int64(o.(*policyv1.PodDisruptionBudget).Status.DisruptionsAllowed)
	}},
}

func validatePDB(obj, _ store.Object) field.ErrorList {
	s := obj.(*policyv1.PodDisruptionBudget).Spec
	if s.MinAvailable != nil && s.MaxUnavailable != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec"), s, "minAvailable and maxUnavailable cannot be both set")}
	}
	return nil
}

var hpaTable = tableDef{
	{name: "Reference", typ: "string", cell: func(o store.Object) any {
		r := o.(*autoscalingv2.HorizontalPodAutoscaler).Spec.ScaleTargetRef
		return r.Kind + "/" + r.Name
	}},
	{name: "Targets", typ: "string", cell: func(o store.Object) any {
		if len(o.(*autoscalingv2.HorizontalPodAutoscaler).Spec.Metrics) == 0 {
			return "<none>"
		}
		return "<unknown>" // no metrics server: nothing is measured
	}},
	{name: "MinPods", typ: "string", cell: func(o store.Object) any {
		if m := o.(*autoscalingv2.HorizontalPodAutoscaler).Spec.MinReplicas; m != nil {
			return fmt.Sprint(*m)
		}
		return "<unset>"
	}},
	{name: "MaxPods", typ: "integer", cell: func(o store.Object) any { return int64(o.(*autoscalingv2.HorizontalPodAutoscaler).Spec.MaxReplicas) }},
	{name: "Replicas", typ: "integer", cell: func(o store.Object) any {
		return int64(o.(*autoscalingv2.HorizontalPodAutoscaler).Status.CurrentReplicas)
	}},
}

func validateHPA(obj, _ store.Object) field.ErrorList {
	s := obj.(*autoscalingv2.HorizontalPodAutoscaler).Spec
	p := field.NewPath("spec")
	var errs field.ErrorList
	if s.ScaleTargetRef.Kind == "" {
		errs = append(errs, field.Required(p.Child("scaleTargetRef", "kind"), ""))
	}
	if s.ScaleTargetRef.Name == "" {
		errs = append(errs, field.Required(p.Child("scaleTargetRef", "name"), ""))
	}
	if s.MinReplicas != nil && *s.MinReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("minReplicas"), *s.MinReplicas, "must be greater than or equal to 1"))
	}
	if s.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than 0"))
	}
	if s.MinReplicas != nil && s.MaxReplicas < *s.MinReplicas {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	return errs
}

// createdAtTable is the Roles' and ClusterRoles' one column instead of Age.
var createdAtTable = tableDef{{name: "Created At", typ: "date", cell: func(o store.Object) any {
	return o.GetCreationTimestamp().UTC().Format(time.RFC3339)
}}}

func validateRules(rules []rbacv1.PolicyRule) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := field.NewPath("rules").Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) == 0 && len(r.Resources) == 0 {
			errs = append(errs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
		}
		if len(r.NonResourceURLs) == 0 && len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
	}
	return errs
}

func validateBinding(ref rbacv1.RoleRef, old *rbacv1.RoleRef, subjects []rbacv1.Subject, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("roleRef")
	kinds := []string{"ClusterRole"}
	if namespaced {
		kinds = append(kinds, "Role")
	}
	switch {
	case ref.APIGroup != rbacv1.GroupName:
		errs = append(errs, field.NotSupported(p.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	case ref.Kind != "ClusterRole" && (ref.Kind != "Role" || !namespaced):
		errs = append(errs, field.NotSupported(p.Child("kind"), ref.Kind, kinds))
	case ref.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	}
	if old != nil && *old != ref {
		errs = append(errs, field.Invalid(p, ref, "cannot change roleRef"))
	}
	for i, s := range subjects {
		sp := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind:
		default:
			errs = append(errs, field.NotSupported(sp.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return errs
}

// bindingTable is kubectl's: the role, then (wide) who is bound.
func bindingTable(of func(store.Object) (rbacv1.RoleRef, []rbacv1.Subject)) tableDef {
	who := func(kind string) func(o store.Object) any {
		return func(o store.Object) any {
			_, subjects := of(o)
			var names []string
			for _, s := range subjects {
				if s.Kind != kind {
					continue
				}
				if kind == rbacv1.ServiceAccountKind {
					names = append(names, s.Namespace+"/"+s.Name)
				} else {
					names = append(names, s.Name)
				}
			}
			return strings.Join(names, ", ")
		}
	}
	return tableDef{
		{name: "Role", typ: "string", cell: func(o store.Object) any { ref, _ := of(o); return ref.Kind + "/" + ref.Name }},
		{name: "Users", typ: "string", wide: true, cell: who(rbacv1.UserKind)},
		{name: "Groups", typ: "string", wide: true, cell: who(rbacv1.GroupKind)},
		{name: "ServiceAccounts", typ: "string", wide: true, cell: who(rbacv1.ServiceAccountKind)},
	}
}

// podTemplateResource is v1 PodTemplates: stored pod templates (kubectl and the e2e
// suite use them; nothing here instantiates them).
func podTemplateResource() *Resource {
	pt := newResource[corev1.PodTemplate]("", "v1", "PodTemplate", "podtemplates", true)
	pt.defaults = func(o store.Object) { defaultPodSpec(&o.(*corev1.PodTemplate).Template.Spec) }
	pt.validate = func(o, _ store.Object) field.ErrorList {
		return validatePodSpec(&o.(*corev1.PodTemplate).Template.Spec, field.NewPath("template", "spec"))
	}
	pt.table = tableDef{{name: "Containers", typ: "string", cell: func(o store.Object) any {
		var names []string
		for _, c := range o.(*corev1.PodTemplate).Template.Spec.Containers {
			names = append(names, c.Name)
		}
		return strings.Join(names, ",")
	}}}
	return pt
}

// runtimeClassResource is node.k8s.io/v1 RuntimeClasses. The node has one runtime;
// every handler runs on it. Pods that name a class are admitted as the RuntimeClass
// admission plugin does (admitRuntimeClass).
func runtimeClassResource() *Resource {
	rc := newResource[nodev1.RuntimeClass]("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false)
	rc.validate = func(o, old store.Object) field.ErrorList {
		c := o.(*nodev1.RuntimeClass)
		var errs field.ErrorList
		for _, msg := range validation.IsDNS1123Label(c.Handler) {
			errs = append(errs, field.Invalid(field.NewPath("handler"), c.Handler, msg))
		}
		if old != nil && old.(*nodev1.RuntimeClass).Handler != c.Handler {
			errs = append(errs, field.Invalid(field.NewPath("handler"), c.Handler, "field is immutable"))
		}
		return errs
	}
	rc.table = tableDef{{name: "Handler", typ: "string", cell: func(o store.Object) any { return o.(*nodev1.RuntimeClass).Handler }}}
	return rc
}

// admitRuntimeClass is the RuntimeClass admission for a new pod: the class must exist;
// its overhead becomes the pod's, and its scheduling constraints are added to the pod's.
func (a *API) admitRuntimeClass(r *Resource, pod *corev1.Pod) error {
	name := pod.Spec.RuntimeClassName
	if name == nil || *name == "" {
		return nil
	}
	obj, err := a.Get(a.reg.Lookup("node.k8s.io", "runtimeclasses"), "", *name)
	if apierrors.IsNotFound(err) {
		return apierrors.NewForbidden(r.GroupResource(), pod.Name, fmt.Errorf("pod rejected: RuntimeClass %q not found", *name))
	}
	if err != nil {
		return err
	}
	rc := obj.(*nodev1.RuntimeClass)
	if rc.Overhead != nil {
		if pod.Spec.Overhead != nil && !equality.Semantic.DeepEqual(pod.Spec.Overhead, rc.Overhead.PodFixed) {
			return apierrors.NewForbidden(r.GroupResource(), pod.Name, fmt.Errorf("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"))
		}
		pod.Spec.Overhead = rc.Overhead.PodFixed.DeepCopy()
	}
	if s := rc.Scheduling; s != nil {
		for k, v := range s.NodeSelector {
			if cur, ok := pod.Spec.NodeSelector[k]; ok && cur != v {
				return apierrors.NewForbidden(r.GroupResource(), pod.Name, fmt.Errorf("conflict: runtimeClass.scheduling.nodeSelector[%s] = %s; pod.spec.nodeSelector[%s] = %s", k, v, k, cur))
			}
			if pod.Spec.NodeSelector == nil {
				pod.Spec.NodeSelector = map[string]string{}
			}
			pod.Spec.NodeSelector[k] = v
		}
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, s.Tolerations...)
	}
	return nil
}

// validateNetworkPolicy is kube-apiserver's NetworkPolicy validation: selectors,
// ports (numbers or names, endPort only after a numeric port and not below it),
// peers (one kind each; ipBlock CIDRs with their exceptions inside) and policy types.
func validateNetworkPolicy(obj, _ store.Object) field.ErrorList {
	np := obj.(*networkingv1.NetworkPolicy)
	spec := field.NewPath("spec")
	opts := metavalidation.LabelSelectorValidationOptions{}
	errs := metavalidation.ValidateLabelSelector(&np.Spec.PodSelector, opts, spec.Child("podSelector"))
	ports := func(ps []networkingv1.NetworkPolicyPort, p *field.Path) {
		for i, port := range ps {
			pp := p.Index(i)
			if port.Protocol != nil && *port.Protocol != corev1.ProtocolTCP && *port.Protocol != corev1.ProtocolUDP && *port.Protocol != corev1.ProtocolSCTP {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
			}
			switch {
			case port.Port == nil:
				if port.EndPort != nil {
					errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
				}
			case port.Port.Type == intstr.Int:
				for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.IntVal, msg))
				}
				if port.EndPort != nil {
					if *port.EndPort < port.Port.IntVal {
						errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
					}
					for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
						errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, msg))
					}
				}
			default:
				if port.EndPort != nil {
					errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
				}
				for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.StrVal, msg))
				}
			}
		}
	}
	peers := func(ps []networkingv1.NetworkPolicyPeer, p *field.Path) {
		for i, peer := range ps {
			pp := p.Index(i)
			n := 0
			if peer.PodSelector != nil {
				n++
				errs = append(errs, metavalidation.ValidateLabelSelector(peer.PodSelector, opts, pp.Child("podSelector"))...)
			}
			if peer.NamespaceSelector != nil {
				n++
				errs = append(errs, metavalidation.ValidateLabelSelector(peer.NamespaceSelector, opts, pp.Child("namespaceSelector"))...)
			}
			if b := peer.IPBlock; b != nil {
				if n > 0 {
					errs = append(errs, field.Forbidden(pp, "may not specify more than 1 peer type"))
				}
				n++
				_, cidr, err := net.ParseCIDR(b.CIDR)
				if err != nil {
					errs = append(errs, field.Invalid(pp.Child("ipBlock", "cidr"), b.CIDR, "must be a valid CIDR"))
				}
				for j, e := range b.Except {
					_, ex, err := net.ParseCIDR(e)
					ep := pp.Child("ipBlock", "except").Index(j)
					switch {
					case err != nil:
						errs = append(errs, field.Invalid(ep, e, "must be a valid CIDR"))
					case cidr != nil:
						ones, _ := ex.Mask.Size()
						cones, _ := cidr.Mask.Size()
						if !cidr.Contains(ex.IP) || ones <= cones {
							errs = append(errs, field.Invalid(ep, e, "must be a strict subset of `cidr`"))
						}
					}
				}
			}
			if n == 0 {
				errs = append(errs, field.Required(pp, "must specify a peer"))
			}
		}
	}
	for i, r := range np.Spec.Ingress {
		ports(r.Ports, spec.Child("ingress").Index(i).Child("ports"))
		peers(r.From, spec.Child("ingress").Index(i).Child("from"))
	}
	for i, r := range np.Spec.Egress {
		ports(r.Ports, spec.Child("egress").Index(i).Child("ports"))
		peers(r.To, spec.Child("egress").Index(i).Child("to"))
	}
	if len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(spec.Child("policyTypes"), np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t, []string{"Ingress", "Egress"}))
		}
	}
	return errs
}

// controllerRevisionResource is apps/v1 ControllerRevisions: the immutable snapshots of
// a controller's template (the StatefulSet controller keeps its history in them).
// Their revision numbers may change, as a controller renumbers a revision it rolls
// back to; their data may not.
func controllerRevisionResource() *Resource {
	cr := newResource[appsv1.ControllerRevision]("apps", "v1", "ControllerRevision", "controllerrevisions", true)
	cr.validate = validateControllerRevision
	cr.table = tableDef{
		{name: "Controller", typ: "string", cell: func(o store.Object) any {
			ref := metav1.GetControllerOf(o)
			if ref == nil {
				return "<none>"
			}
			gv, _ := schema.ParseGroupVersion(ref.APIVersion)
			return strings.ToLower(gv.WithKind(ref.Kind).GroupKind().String()) + "/" + ref.Name
		}},
		// kubectl's column says string, its cells are numbers.
		{name: "Revision", typ: "string", cell: func(o store.Object) any { return o.(*appsv1.ControllerRevision).Revision }},
	}
	return cr
}

// validateControllerRevision is kube-apiserver's: a revision is not negative; a new
// one's data is a JSON object; an update keeps the data.
func validateControllerRevision(obj, old store.Object) field.ErrorList {
	cr := obj.(*appsv1.ControllerRevision)
	var errs field.ErrorList
	if cr.Revision < 0 {
		errs = append(errs, field.Invalid(field.NewPath("revision"), cr.Revision, "must be greater than or equal to 0"))
	}
	data := field.NewPath("data")
	if old != nil {
		if !sameJSON(cr.Data.Raw, old.(*appsv1.ControllerRevision).Data.Raw) {
			errs = append(errs, field.Invalid(data, "<value omitted>", "field is immutable"))
		}
		return errs
	}
	var v any
	if cr.Data.Raw == nil {
		return append(errs, field.Required(data, "data is mandatory"))
	}
	if err := json.Unmarshal(cr.Data.Raw, &v); err != nil {
		return append(errs, field.Invalid(data, "<value omitted>", fmt.Sprintf("error parsing data: %v", err)))
	}
	switch v.(type) {
	case nil:
		errs = append(errs, field.Required(data, "data is mandatory"))
	case map[string]any:
	default:
		errs = append(errs, field.Required(data, "data must be a valid JSON object"))
	}
	return errs
}

// sameJSON compares data as JSON values: a client that sends the stored data back
// re-encoded (an apply, a patch) has not changed it.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return equality.Semantic.DeepEqual(va, vb)
}
