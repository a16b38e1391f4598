package apiserver

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/node/sysctl"
	"github.com/minicluster/minicluster/store"
)

// Validation follows the rules and messages of Kubernetes' pkg/apis/*/validation for the
// fields minicluster acts on. Object metadata (names, labels, annotations, owner
// references) is checked generically in the handler with apimachinery's validation.

// maxClientIPAffinitySeconds is Kubernetes' upper bound for sessionAffinityConfig (1 day).
const maxClientIPAffinitySeconds = 86400

var (
	specPath     = field.NewPath("spec")
	supportedPro = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
)

func validateNamespace(obj, old store.Object) field.ErrorList { return nil }

func validatePod(obj, old store.Object) field.ErrorList {
	pod := obj.(*corev1.Pod)
	errs := validatePodSpec(&pod.Spec, specPath)
	if old != nil {
		// Ephemeral containers are added, never changed or removed.
		was := old.(*corev1.Pod).Spec.EphemeralContainers
		p := specPath.Child("ephemeralContainers")
		for _, e := range was {
			i := slices.IndexFunc(pod.Spec.EphemeralContainers, func(c corev1.EphemeralContainer) bool { return c.Name == e.Name })
			switch {
			case i < 0:
				errs = append(errs, field.Forbidden(p, fmt.Sprintf("existing ephemeral containers %q may not be removed", e.Name)))
			case !apiequality.Semantic.DeepEqual(pod.Spec.EphemeralContainers[i], e):
				errs = append(errs, field.Forbidden(p.Index(i), fmt.Sprintf("existing ephemeral containers %q may not be changed", e.Name)))
			}
		}
	}
	return errs
}

func validatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	volumes, verrs := validateVolumes(s.Volumes, p.Child("volumes"))
	errs = append(errs, verrs...)
	names := sets.New[string]()
	for i := range s.InitContainers {
		cp := p.Child("initContainers").Index(i)
		errs = append(errs, validateContainer(&s.InitContainers[i], names, cp)...)
		errs = append(errs, validateVolumeMounts(s.InitContainers[i].VolumeMounts, volumes, cp.Child("volumeMounts"))...)
	}
	for i := range s.Containers {
		cp := p.Child("containers").Index(i)
		errs = append(errs, validateContainer(&s.Containers[i], names, cp)...)
		errs = append(errs, validateVolumeMounts(s.Containers[i].VolumeMounts, volumes, cp.Child("volumeMounts"))...)
	}
	for i := range s.EphemeralContainers {
		e := &s.EphemeralContainers[i]
		ep := p.Child("ephemeralContainers").Index(i)
		c := corev1.Container(e.EphemeralContainerCommon)
		errs = append(errs, validateContainer(&c, names, ep)...)
		errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, ep.Child("volumeMounts"))...)
		for _, f := range []struct {
			name string
			set  bool
		}{{"ports", len(c.Ports) > 0}, {"livenessProbe", c.LivenessProbe != nil}, {"readinessProbe", c.ReadinessProbe != nil},
			{"startupProbe", c.StartupProbe != nil}, {"lifecycle", c.Lifecycle != nil}, {"resources", len(c.Resources.Limits)+len(c.Resources.Requests) > 0}} {
			if f.set {
				errs = append(errs, field.Forbidden(ep.Child(f.name), "cannot be set for an Ephemeral Container"))
			}
		}
		if t := e.TargetContainerName; t != "" && !slices.ContainsFunc(s.Containers, func(c corev1.Container) bool { return c.Name == t }) &&
			!slices.ContainsFunc(s.InitContainers, func(c corev1.Container) bool { return c.Name == t }) {
			errs = append(errs, field.NotFound(ep.Child("targetContainerName"), t))
		}
	}
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy,
			[]corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	}
	switch s.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if s.DNSConfig == nil {
			errs = append(errs, field.Required(p.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("dnsPolicy"), s.DNSPolicy,
			[]corev1.DNSPolicy{corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}))
	}
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(p.Child("hostname"), s.Hostname, msg))
		}
	}
	if s.Subdomain != "" {
		for _, msg := range validation.IsDNS1123Label(s.Subdomain) {
			errs = append(errs, field.Invalid(p.Child("subdomain"), s.Subdomain, msg))
		}
	}
	if sc := s.SecurityContext; sc != nil {
		errs = append(errs, validateSysctls(sc.Sysctls, s.HostNetwork, s.HostIPC, p.Child("securityContext", "sysctls"))...)
	}
	return errs
}

// validateSysctls is validation's validateSysctls: valid names, each once, and none of
// a namespace the pod shares with the node.
func validateSysctls(sysctls []corev1.Sysctl, hostNetwork, hostIPC bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, s := range sysctls {
		np := p.Index(i).Child("name")
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(np, ""))
		case !sysctl.ValidName(s.Name):
			errs = append(errs, field.Invalid(np, s.Name, fmt.Sprintf("must have at most %d characters and match regex %s", sysctl.MaxLength, sysctl.NameRegexp)))
		case names.Has(s.Name):
			errs = append(errs, field.Duplicate(np, s.Name))
		}
		switch ns := sysctl.NamespaceOf(s.Name); {
		case hostNetwork && ns == sysctl.Net:
			errs = append(errs, field.Invalid(np, s.Name, "may not be specified when 'hostNetwork' is true"))
		case hostIPC && ns == sysctl.IPC:
			errs = append(errs, field.Invalid(np, s.Name, "may not be specified when 'hostIPC' is true"))
		}
		names.Insert(s.Name)
	}
	return errs
}

func validateContainer(c *corev1.Container, names sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
		}
		if names.Has(c.Name) {
			errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
		}
		names.Insert(c.Name)
	}
	if c.Image == "" {
		errs = append(errs, field.Required(p.Child("image"), ""))
	}
	portNames := sets.New[string]()
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if portNames.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			portNames.Insert(port.Name)
		}
		errs = append(errs, validatePortNum(port.ContainerPort, pp.Child("containerPort"))...)
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
	}
	for i, e := range c.Env {
		if e.Name == "" {
			errs = append(errs, field.Required(p.Child("env").Index(i).Child("name"), ""))
		}
	}
	return errs
}

func validatePortNum(port int32, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidPortNum(int(port)) {
		errs = append(errs, field.Invalid(p, port, msg))
	}
	return errs
}

func validateProtocol(proto corev1.Protocol, p *field.Path) field.ErrorList {
	if proto == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if !supportedPro.Has(proto) {
		return field.ErrorList{field.NotSupported(p, proto, sets.List(supportedPro))}
	}
	return nil
}

func validateService(obj, old store.Object) field.ErrorList {
	svc := obj.(*corev1.Service)
	s := &svc.Spec
	var errs field.ErrorList
	switch s.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		if len(s.Ports) == 0 && s.ClusterIP != corev1.ClusterIPNone {
			errs = append(errs, field.Required(specPath.Child("ports"), ""))
		}
	case corev1.ServiceTypeExternalName:
		if s.ClusterIP != "" {
			errs = append(errs, field.Forbidden(specPath.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		// A trailing dot (a fully qualified name) is accepted, as in Kubernetes.
		for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(s.ExternalName, ".")) {
			errs = append(errs, field.Invalid(specPath.Child("externalName"), s.ExternalName, msg))
		}
	default:
		errs = append(errs, field.NotSupported(specPath.Child("type"), s.Type, []corev1.ServiceType{
			corev1.ServiceTypeClusterIP, corev1.ServiceTypeExternalName, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort}))
	}
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		if _, ok := parseIP(s.ClusterIP); !ok {
			errs = append(errs, field.Invalid(specPath.Child("clusterIP"), s.ClusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
		}
	}
	if s.Type == corev1.ServiceTypeClusterIP || s.ClusterIP == corev1.ClusterIPNone {
		for i, p := range s.Ports {
			if p.NodePort != 0 && s.Type == corev1.ServiceTypeClusterIP {
				errs = append(errs, field.Forbidden(specPath.Child("ports").Index(i).Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
		}
	}
	errs = append(errs, validateServicePorts(s.Ports)...)
	// One nodePort per protocol, as kube-apiserver checks it.
	nodePorts := map[corev1.ServicePort]bool{}
	for i, p := range s.Ports {
		k := corev1.ServicePort{Protocol: p.Protocol, NodePort: p.NodePort}
		if p.NodePort != 0 && nodePorts[k] {
			errs = append(errs, field.Duplicate(specPath.Child("ports").Index(i).Child("nodePort"), p.NodePort))
		}
		nodePorts[k] = true
	}
	errs = append(errs, metavalidation.ValidateLabels(s.Selector, specPath.Child("selector"))...)
	switch s.SessionAffinity {
	case corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("sessionAffinity"), s.SessionAffinity,
			[]corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}))
	}
	if c := s.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPAffinitySeconds {
			errs = append(errs, field.Invalid(specPath.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t,
				fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPAffinitySeconds)))
		}
	}
	for i, ip := range s.ExternalIPs {
		p := specPath.Child("externalIPs").Index(i)
		a, ok := parseIP(ip)
		if !ok {
			errs = append(errs, field.Invalid(p, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
			continue
		}
		// kube-apiserver's ValidateNonSpecialIP: such an address would take the node's
		// own traffic (an externalIP of 127.0.0.1:6443 took the API down).
		switch {
		case a.IsUnspecified():
			errs = append(errs, field.Invalid(p, ip, fmt.Sprintf("may not be unspecified (%v)", ip)))
		case a.IsLoopback():
			errs = append(errs, field.Invalid(p, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
		case a.IsLinkLocalUnicast():
			errs = append(errs, field.Invalid(p, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
		case a.IsLinkLocalMulticast():
			errs = append(errs, field.Invalid(p, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
		}
	}
	if old != nil {
		o := old.(*corev1.Service)
		if o.Spec.ClusterIP != "" && s.Type != corev1.ServiceTypeExternalName && s.ClusterIP != o.Spec.ClusterIP {
			errs = append(errs, field.Invalid(specPath.Child("clusterIP"), s.ClusterIP, "field is immutable"))
		}
	}
	return errs
}

func validateServicePorts(ports []corev1.ServicePort) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	seen := sets.New[string]()
	for i, port := range ports {
		p := specPath.Child("ports").Index(i)
		if len(ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		if port.Name != "" {
			for _, msg := range validation.IsDNS1123Label(port.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(p.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		errs = append(errs, validatePortNum(port.Port, p.Child("port"))...)
		errs = append(errs, validateProtocol(port.Protocol, p.Child("protocol"))...)
		key := fmt.Sprintf("%d/%s", port.Port, port.Protocol)
		if seen.Has(key) {
			errs = append(errs, field.Duplicate(p, key))
		}
		seen.Insert(key)
		errs = append(errs, validateTargetPort(port.TargetPort, p.Child("targetPort"))...)
	}
	return errs
}

func validateTargetPort(tp intstr.IntOrString, p *field.Path) field.ErrorList {
	if tp.Type == intstr.String {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPortName(tp.StrVal) {
			errs = append(errs, field.Invalid(p, tp.StrVal, msg))
		}
		return errs
	}
	return validatePortNum(tp.IntVal, p)
}

func validateIP(ip string, p *field.Path) field.ErrorList {
	if _, ok := parseIP(ip); !ok {
		return field.ErrorList{field.Invalid(p, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")}
	}
	return nil
}

func validateEndpoints(obj, old store.Object) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range obj.(*corev1.Endpoints).Subsets {
		p := field.NewPath("subsets").Index(i)
		for j, a := range ss.Addresses {
			errs = append(errs, validateIP(a.IP, p.Child("addresses").Index(j).Child("ip"))...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validateIP(a.IP, p.Child("notReadyAddresses").Index(j).Child("ip"))...)
		}
		for j, port := range ss.Ports {
			errs = append(errs, validatePortNum(port.Port, p.Child("ports").Index(j).Child("port"))...)
			errs = append(errs, validateProtocol(port.Protocol, p.Child("ports").Index(j).Child("protocol"))...)
		}
	}
	return errs
}

func validateEndpointSlice(obj, old store.Object) field.ErrorList {
	s := obj.(*discoveryv1.EndpointSlice)
	var errs field.ErrorList
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType,
			[]discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN}))
	}
	for i, ep := range s.Endpoints {
		p := field.NewPath("endpoints").Index(i).Child("addresses")
		if len(ep.Addresses) == 0 {
			errs = append(errs, field.Required(p, "must contain at least 1 address"))
		}
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for j, a := range ep.Addresses {
			errs = append(errs, validateIP(a, p.Index(j))...)
		}
	}
	for i, port := range s.Ports {
		p := field.NewPath("ports").Index(i)
		if port.Port != nil {
			errs = append(errs, validatePortNum(*port.Port, p.Child("port"))...)
		}
		if port.Protocol != nil {
			errs = append(errs, validateProtocol(*port.Protocol, p.Child("protocol"))...)
		}
	}
	if old != nil && s.AddressType != old.(*discoveryv1.EndpointSlice).AddressType {
		errs = append(errs, field.Invalid(field.NewPath("addressType"), s.AddressType, "field is immutable"))
	}
	return errs
}

func validateEvent(obj, old store.Object) field.ErrorList {
	e := obj.(*corev1.Event)
	if e.InvolvedObject.Kind == "" && e.InvolvedObject.Name == "" {
		return field.ErrorList{field.Required(field.NewPath("involvedObject"), "")}
	}
	return nil
}

// validateWorkload checks what Deployments and ReplicaSets share: replicas, selector,
// and a template whose labels the selector matches.
func validateWorkload(replicas *int32, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) field.ErrorList {
	var errs field.ErrorList
	if replicas != nil && *replicas < 0 {
		errs = append(errs, field.Invalid(specPath.Child("replicas"), *replicas, "must be greater than or equal to 0"))
	}
	if sel == nil {
		return append(errs, field.Required(specPath.Child("selector"), ""))
	}
	errs = append(errs, metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(specPath.Child("selector"), sel, "empty selector is invalid for deployment"))
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err == nil && !s.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(specPath.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, metavalidation.ValidateLabels(tmpl.Labels, specPath.Child("template", "metadata", "labels"))...)
	return append(errs, validatePodSpec(&tmpl.Spec, specPath.Child("template", "spec"))...)
}

func validateDeployment(obj, old store.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	errs := validateWorkload(d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template)
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType, appsv1.RecreateDeploymentStrategyType:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("strategy", "type"), d.Spec.Strategy.Type,
			[]appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType}))
	}
	if old != nil && !apiequality.Semantic.DeepEqual(d.Spec.Selector, old.(*appsv1.Deployment).Spec.Selector) {
		errs = append(errs, field.Invalid(specPath.Child("selector"), d.Spec.Selector, "field is immutable"))
	}
	return errs
}

func validateReplicaSet(obj, old store.Object) field.ErrorList {
	rs := obj.(*appsv1.ReplicaSet)
	errs := validateWorkload(rs.Spec.Replicas, rs.Spec.Selector, &rs.Spec.Template)
	if old != nil && !apiequality.Semantic.DeepEqual(rs.Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector) {
		errs = append(errs, field.Invalid(specPath.Child("selector"), rs.Spec.Selector, "field is immutable"))
	}
	return errs
}
