package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// describe prints objects the way kubectl describe does: the fields a person asks
// about, aligned, and the events that name the object.
func (c *client) describe(args []string) error {
	fs := flag.NewFlagSet("describe", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var f getFlags
	f.selectionFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("you must specify the type of resource to describe")
	}
	if t, name, ok := strings.Cut(pos[0], "/"); ok && len(pos) == 1 {
		pos = []string{t, name}
	}
	resources, err := c.resolveTypes(pos[0])
	if err != nil {
		return err
	}
	ns := c.namespace
	if f.allNamespaces {
		ns = ""
	}
	// As kubectl: objects asked for (or listed) are separated by two blank lines; each
	// object found by a name prefix ends with one.
	printed := 0
	show := func(obj store.Object, matched bool) {
		if !matched && printed > 0 {
			fmt.Fprint(c.stdout, "\n\n")
		}
		if !matched {
			printed++
		}
		w := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
		d := describer{w: w, now: time.Now()}
		if c.describeObject(&d, obj) {
			d.events(c.events(obj))
		}
		if matched {
			d.line(0, "")
		}
		w.Flush()
	}
	var errs []error // printed after the objects, as kubectl does
	for _, r := range resources {
		if len(pos) == 1 {
			all, err := c.listObjects(r, ns, c.listQuery(f, nil))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, obj := range all {
				show(obj, false)
			}
			continue
		}
		for _, name := range pos[1:] {
			obj := r.New()
			err := c.getInto(resourcePath(r, ns, name), nil, obj)
			var apiErr *apiError
			if errors.As(err, &apiErr) && apiErr.status.Code == http.StatusNotFound {
				// As kubectl: a name that is not an object's is a prefix of objects' names.
				all, _ := c.listObjects(r, ns, nil)
				all = slices.DeleteFunc(all, func(o store.Object) bool { return !strings.HasPrefix(o.GetName(), name) })
				for _, obj := range all {
					show(obj, true)
				}
				if len(all) > 0 {
					continue
				}
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			show(obj, false)
		}
	}
	if len(pos) == 1 && printed == 0 && len(errs) == 0 {
		c.noResources(resources[0], ns)
	}
	for _, err := range errs {
		fmt.Fprintln(c.stderr, err)
	}
	if len(errs) > 0 {
		return errReported
	}
	return nil
}

// listObjects lists r in ns as typed objects.
func (c *client) listObjects(r *apiserver.Resource, ns string, q url.Values) ([]store.Object, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := c.getInto(resourcePath(r, ns, ""), q, &list); err != nil {
		return nil, err
	}
	objs := make([]store.Object, 0, len(list.Items))
	for _, item := range list.Items {
		obj := r.New()
		if err := json.Unmarshal(item, obj); err != nil {
			return nil, err
		}
		obj.GetObjectKind().SetGroupVersionKind(r.GVK()) // list items need not say
		objs = append(objs, obj)
	}
	return objs, nil
}

// describeObject prints obj and reports whether its events follow (kubectl shows none
// for a namespace).
func (c *client) describeObject(d *describer, obj store.Object) bool {
	switch o := obj.(type) {
	case *corev1.Namespace:
		d.meta(o)
		d.line(0, "Status:\t%s", o.Status.Phase)
		return false
	case *corev1.Node:
		var pods corev1.PodList
		c.list("", "pods", "", url.Values{"fieldSelector": {"spec.nodeName=" + o.Name}}, &pods)
		lease := &coordinationv1.Lease{}
		err := c.getInto(resourcePath(c.reg.Lookup("coordination.k8s.io", "leases"), corev1.NamespaceNodeLease, o.Name), nil, lease)
		d.node(o, lease, err, pods.Items)
	case *corev1.Service:
		d.meta(o)
		d.service(o, c.slicesOf(o))
	case *corev1.Endpoints:
		d.meta(o)
		d.endpoints(o)
	case *discoveryv1.EndpointSlice:
		d.meta(o)
		d.slice(o)
	case *corev1.Pod:
		d.pod(o)
	case *appsv1.Deployment:
		d.deployment(o, c.replicaSetsOf(o))
	case *appsv1.ReplicaSet:
		d.replicaSet(o, c.podsOf(o))
	default:
		d.meta(obj)
		d.generic(obj)
	}
	return true
}

func (c *client) slicesOf(svc *corev1.Service) []discoveryv1.EndpointSlice {
	var l discoveryv1.EndpointSliceList
	c.list("discovery.k8s.io", "endpointslices", svc.Namespace, url.Values{"labelSelector": {discoveryv1.LabelServiceName + "=" + svc.Name}}, &l)
	return l.Items
}

func (c *client) replicaSetsOf(dep *appsv1.Deployment) []appsv1.ReplicaSet {
	var l appsv1.ReplicaSetList
	c.list("apps", "replicasets", dep.Namespace, nil, &l)
	return slices.DeleteFunc(l.Items, func(rs appsv1.ReplicaSet) bool { return !controlledBy(&rs, dep) })
}

func (c *client) podsOf(rs *appsv1.ReplicaSet) []corev1.Pod {
	var l corev1.PodList
	c.list("", "pods", rs.Namespace, nil, &l)
	return slices.DeleteFunc(l.Items, func(p corev1.Pod) bool { return !controlledBy(&p, rs) })
}

func controlledBy(obj, owner metav1.Object) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == owner.GetUID()
}

// events are the events about obj, oldest first, found as kubectl finds them.
func (c *client) events(obj store.Object) []corev1.Event {
	var l corev1.EventList
	sel := fmt.Sprintf("involvedObject.name=%s,involvedObject.namespace=%s,involvedObject.kind=%s,involvedObject.uid=%s",
		obj.GetName(), obj.GetNamespace(), obj.GetObjectKind().GroupVersionKind().Kind, obj.GetUID())
	c.list("", "events", obj.GetNamespace(), url.Values{"fieldSelector": {sel}}, &l)
	slices.SortStableFunc(l.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	return l.Items
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// describer writes kubectl's layout: "Field:<tab>value" lines, two spaces per level.
type describer struct {
	w   io.Writer
	now time.Time
}

func (d *describer) line(level int, format string, args ...any) {
	fmt.Fprintf(d.w, strings.Repeat("  ", level)+format+"\n", args...)
}

// multiline prints a map one "k<sep>v" per line, sorted, under title; <none> when empty.
func (d *describer) multiline(level int, title, sep string, m map[string]string, skip ...string) {
	keys := slices.DeleteFunc(slices.Sorted(maps.Keys(m)), func(k string) bool { return slices.Contains(skip, k) })
	if len(keys) == 0 {
		d.line(level, "%s:\t<none>", title)
		return
	}
	for i, k := range keys {
		if i == 0 {
			d.line(level, "%s:\t%s%s%s", title, k, sep, m[k])
		} else {
			d.line(level, "\t%s%s%s", k, sep, m[k])
		}
	}
}

func (d *describer) meta(o metav1.Object) {
	d.line(0, "Name:\t%s", o.GetName())
	if o.GetNamespace() != "" {
		d.line(0, "Namespace:\t%s", o.GetNamespace())
	}
	d.labels(0, o)
}

func (d *describer) labels(level int, o metav1.Object) {
	d.multiline(level, "Labels", "=", o.GetLabels())
	d.multiline(level, "Annotations", ": ", o.GetAnnotations(), corev1.LastAppliedConfigAnnotation)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func orUnset(s string) string {
	if s == "" {
		return "<unset>"
	}
	return s
}

func (d *describer) age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(d.now.Sub(t.Time))
}

func (d *describer) service(s *corev1.Service, slices []discoveryv1.EndpointSlice) {
	d.line(0, "Selector:\t%s", labels.FormatLabels(s.Spec.Selector))
	d.line(0, "Type:\t%s", s.Spec.Type)
	if s.Spec.IPFamilyPolicy != nil {
		d.line(0, "IP Family Policy:\t%s", *s.Spec.IPFamilyPolicy)
	}
	families := []string{}
	for _, f := range s.Spec.IPFamilies {
		families = append(families, string(f))
	}
	d.line(0, "IP Families:\t%s", orNone(strings.Join(families, ",")))
	d.line(0, "IP:\t%s", s.Spec.ClusterIP)
	if len(s.Spec.ClusterIPs) > 0 {
		d.line(0, "IPs:\t%s", strings.Join(s.Spec.ClusterIPs, ","))
	}
	if len(s.Spec.ExternalIPs) > 0 {
		d.line(0, "External IPs:\t%s", strings.Join(s.Spec.ExternalIPs, ","))
	}
	if s.Spec.ExternalName != "" {
		d.line(0, "External Name:\t%s", s.Spec.ExternalName)
	}
	for _, p := range s.Spec.Ports {
		d.line(0, "Port:\t%s\t%d/%s", orUnset(p.Name), p.Port, p.Protocol)
		if p.TargetPort.Type == 1 {
			d.line(0, "TargetPort:\t%s/%s", p.TargetPort.StrVal, p.Protocol)
		} else {
			d.line(0, "TargetPort:\t%d/%s", p.TargetPort.IntVal, p.Protocol)
		}
		if p.NodePort != 0 {
			d.line(0, "NodePort:\t%s\t%d/%s", orUnset(p.Name), p.NodePort, p.Protocol)
		}
		d.line(0, "Endpoints:\t%s", sliceEndpoints(slices, p))
	}
	d.line(0, "Session Affinity:\t%s", s.Spec.SessionAffinity)
	if s.Spec.ExternalTrafficPolicy != "" {
		d.line(0, "External Traffic Policy:\t%s", s.Spec.ExternalTrafficPolicy)
	}
	if s.Spec.InternalTrafficPolicy != nil {
		d.line(0, "Internal Traffic Policy:\t%s", *s.Spec.InternalTrafficPolicy)
	}
}

// sliceEndpoints lists the ready addresses serving the service port p as ip:port, as
// kubectl 1.32 does from the EndpointSlices.
func sliceEndpoints(slices []discoveryv1.EndpointSlice, p corev1.ServicePort) string {
	var out []string
	for _, s := range slices {
		for _, sp := range s.Ports {
			if sp.Name == nil || *sp.Name != p.Name || sp.Port == nil {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					out = append(out, a+":"+strconv.Itoa(int(*sp.Port)))
				}
			}
		}
	}
	return strings.Join(out, ",")
}

func (d *describer) endpoints(e *corev1.Endpoints) {
	d.line(0, "Subsets:")
	for _, s := range e.Subsets {
		var ready, notReady []string
		for _, a := range s.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
		d.line(1, "Addresses:\t%s", orNone(strings.Join(ready, ",")))
		d.line(1, "NotReadyAddresses:\t%s", orNone(strings.Join(notReady, ",")))
		if len(s.Ports) == 0 {
			d.line(1, "Ports:\t<none>")
			continue
		}
		d.line(1, "Ports:")
		d.line(2, "Name\tPort\tProtocol")
		d.line(2, "----\t----\t--------")
		for _, p := range s.Ports {
			d.line(2, "%s\t%d\t%s", orUnset(p.Name), p.Port, p.Protocol)
		}
	}
	d.line(0, "")
}

func (d *describer) slice(s *discoveryv1.EndpointSlice) {
	d.line(0, "AddressType:\t%s", s.AddressType)
	if len(s.Ports) == 0 {
		d.line(0, "Ports:\t<unset>")
	} else {
		d.line(0, "Ports:")
		d.line(1, "Name\tPort\tProtocol")
		d.line(1, "----\t----\t--------")
		for _, p := range s.Ports {
			port := "<unset>"
			if p.Port != nil {
				port = strconv.Itoa(int(*p.Port))
			}
			proto := "<unset>"
			if p.Protocol != nil {
				proto = string(*p.Protocol)
			}
			d.line(1, "%s\t%s\t%s", orUnset(ptr.Deref(p.Name, "")), port, proto)
		}
	}
	if len(s.Endpoints) == 0 {
		d.line(0, "Endpoints:\t<none>")
		return
	}
	d.line(0, "Endpoints:")
	for _, e := range s.Endpoints {
		d.line(1, "- Addresses:\t%s", strings.Join(e.Addresses, ","))
		d.line(2, "Conditions:")
		d.line(3, "Ready:\t%s", ptrBool(e.Conditions.Ready))
		d.line(2, "Hostname:\t%s", orUnset(ptr.Deref(e.Hostname, "")))
		if e.TargetRef != nil {
			d.line(2, "TargetRef:\t%s/%s", e.TargetRef.Kind, e.TargetRef.Name)
		}
		d.line(2, "NodeName:\t%s", orUnset(ptr.Deref(e.NodeName, "")))
		d.line(2, "Zone:\t%s", orUnset(ptr.Deref(e.Zone, "")))
	}
}

func ptrBool(b *bool) string {
	if b == nil {
		return "<unset>"
	}
	return strconv.FormatBool(*b)
}

func (d *describer) pod(p *corev1.Pod) {
	d.line(0, "Name:\t%s", p.Name)
	d.line(0, "Namespace:\t%s", p.Namespace)
	if p.Spec.Priority != nil {
		d.line(0, "Priority:\t%d", *p.Spec.Priority)
	}
	if p.Spec.ServiceAccountName != "" {
		d.line(0, "Service Account:\t%s", p.Spec.ServiceAccountName)
	}
	node := "<none>"
	if p.Spec.NodeName != "" {
		node = p.Spec.NodeName + "/" + p.Status.HostIP
	}
	d.line(0, "Node:\t%s", node)
	if p.Status.StartTime != nil {
		d.line(0, "Start Time:\t%s", p.Status.StartTime.Time.Format(time.RFC1123Z))
	}
	d.labels(0, p)
	status := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		status = "Terminating (lasts " + d.age(*p.DeletionTimestamp) + ")"
	}
	d.line(0, "Status:\t%s", status)
	if p.Status.Reason != "" {
		d.line(0, "Reason:\t%s", p.Status.Reason)
	}
	if p.Status.Message != "" {
		d.line(0, "Message:\t%s", p.Status.Message)
	}
	d.line(0, "IP:\t%s", p.Status.PodIP)
	if len(p.Status.PodIPs) == 0 {
		d.line(0, "IPs:\t<none>")
	} else {
		d.line(0, "IPs:")
		for _, ip := range p.Status.PodIPs {
			d.line(1, "IP:\t%s", ip.IP)
		}
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		d.line(0, "Controlled By:\t%s/%s", ref.Kind, ref.Name)
	}
	if len(p.Spec.InitContainers) > 0 {
		d.line(0, "Init Containers:")
		d.containers(p.Spec.InitContainers, p.Status.InitContainerStatuses, "")
	}
	d.line(0, "Containers:")
	d.containers(p.Spec.Containers, p.Status.ContainerStatuses, "")
	if len(p.Status.Conditions) > 0 {
		d.line(0, "Conditions:")
		d.line(1, "Type\tStatus")
		for _, c := range p.Status.Conditions {
			d.line(1, "%s \t%s ", c.Type, c.Status)
		}
	}
	qos := p.Status.QOSClass
	if qos == "" {
		qos = apiserver.PodQOSClass(p.Spec) // a server that does not fill it
	}
	d.podSpecTail(0, p.Spec, string(qos))
}

// volume prints a volume's source as kubectl describe does.
func (d *describer) volume(level int, v corev1.VolumeSource) {
	switch {
	case v.EmptyDir != nil:
		limit := "<unset>"
		if l := v.EmptyDir.SizeLimit; l != nil && l.Sign() > 0 {
			limit = l.String()
		}
		d.line(level, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)")
		d.line(level, "Medium:\t%s", v.EmptyDir.Medium)
		d.line(level, "SizeLimit:\t%s", limit)
	case v.HostPath != nil:
		typ := "<none>"
		if v.HostPath.Type != nil {
			typ = string(*v.HostPath.Type)
		}
		d.line(level, "Type:\tHostPath (bare host directory volume)")
		d.line(level, "Path:\t%s", v.HostPath.Path)
		d.line(level, "HostPathType:\t%s", typ)
	case v.Secret != nil:
		d.line(level, "Type:\tSecret (a volume populated by a Secret)")
		d.line(level, "SecretName:\t%s", v.Secret.SecretName)
		d.line(level, "Optional:\t%v", ptr.Deref(v.Secret.Optional, false))
	case v.ConfigMap != nil:
		d.line(level, "Type:\tConfigMap (a volume populated by a ConfigMap)")
		d.line(level, "Name:\t%s", v.ConfigMap.Name)
		d.line(level, "Optional:\t%v", ptr.Deref(v.ConfigMap.Optional, false))
	case v.DownwardAPI != nil:
		d.line(level, "Type:\tDownwardAPI (a volume populated by information about the pod)")
		d.line(level, "Items:")
		for _, it := range v.DownwardAPI.Items {
			if it.FieldRef != nil {
				d.line(level+1, "%s -> %s", it.FieldRef.FieldPath, it.Path)
			}
			if it.ResourceFieldRef != nil {
				d.line(level+1, "%s -> %s", it.ResourceFieldRef.Resource, it.Path)
			}
		}
	case v.PersistentVolumeClaim != nil:
		d.line(level, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)")
		d.line(level, "ClaimName:\t%s", v.PersistentVolumeClaim.ClaimName)
		d.line(level, "ReadOnly:\t%v", v.PersistentVolumeClaim.ReadOnly)
	case v.Projected != nil:
		d.line(level, "Type:\tProjected (a volume that contains injected data from multiple sources)")
		optional := func(b *bool) string {
			if b == nil {
				return "<nil>"
			}
			return fmt.Sprint(*b)
		}
		for _, src := range v.Projected.Sources {
			switch {
			case src.Secret != nil:
				d.line(level, "SecretName:\t%s", src.Secret.Name)
				d.line(level, "SecretOptionalName:\t%s", optional(src.Secret.Optional))
			case src.DownwardAPI != nil:
				d.line(level, "DownwardAPI:\ttrue")
			case src.ConfigMap != nil:
				d.line(level, "ConfigMapName:\t%s", src.ConfigMap.Name)
				d.line(level, "ConfigMapOptional:\t%s", optional(src.ConfigMap.Optional))
			case src.ServiceAccountToken != nil:
				d.line(level, "TokenExpirationSeconds:\t%d", ptr.Deref(src.ServiceAccountToken.ExpirationSeconds, 0))
			}
		}
	default:
		d.line(level, "<unknown>")
	}
}

// podSpecTail prints a pod spec's volumes, QoS class (pods only), node selectors and
// tolerations.
func (d *describer) podSpecTail(level int, spec corev1.PodSpec, qos string) {
	if len(spec.Volumes) == 0 {
		d.line(level, "Volumes:\t<none>")
	} else {
		d.line(level, "Volumes:")
		for _, v := range spec.Volumes {
			d.line(level+1, "%s:", v.Name)
			d.volume(level+2, v.VolumeSource)
		}
	}
	if qos != "" {
		d.line(level, "QoS Class:\t%s", qos)
	}
	d.multiline(level, "Node-Selectors", "=", spec.NodeSelector)
	if len(spec.Tolerations) == 0 {
		d.line(level, "Tolerations:\t<none>")
	}
	for i, t := range spec.Tolerations {
		title := "Tolerations:"
		if i > 0 {
			title = ""
		}
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists {
			s = strings.TrimSpace(s + " op=Exists")
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		d.line(level, "%s\t%s", title, s)
	}
}

// containers prints containers as kubectl does: in a pod with their statuses, or in a
// pod template (no statuses; kubectl indents the names there by one more space).
func (d *describer) containers(cs []corev1.Container, statuses []corev1.ContainerStatus, nameIndent string) {
	for _, c := range cs {
		i := slices.IndexFunc(statuses, func(s corev1.ContainerStatus) bool { return s.Name == c.Name })
		d.line(1, "%s%s:", nameIndent, c.Name)
		if i >= 0 {
			d.line(2, "Container ID:\t%s", statuses[i].ContainerID)
		}
		d.line(2, "Image:\t%s", c.Image)
		if i >= 0 {
			d.line(2, "Image ID:\t%s", statuses[i].ImageID)
		}
		if len(c.Ports) == 0 {
			d.line(2, "Port:\t<none>")
			d.line(2, "Host Port:\t<none>")
		} else {
			var ports, hostPorts []string
			for _, port := range c.Ports {
				ports = append(ports, fmt.Sprintf("%d/%s", port.ContainerPort, port.Protocol))
				hostPorts = append(hostPorts, fmt.Sprintf("%d/%s", port.HostPort, port.Protocol))
			}
			d.line(2, "Port:\t%s", strings.Join(ports, ", "))
			d.line(2, "Host Port:\t%s", strings.Join(hostPorts, ", "))
		}
		for _, list := range []struct {
			title string
			items []string
		}{{"Command", c.Command}, {"Args", c.Args}} {
			if len(list.items) > 0 {
				d.line(2, "%s:", list.title)
				for _, s := range list.items {
					d.line(3, "%s", s)
				}
			}
		}
		if i >= 0 {
			st := statuses[i]
			d.state(2, "State", st.State)
			if st.LastTerminationState != (corev1.ContainerState{}) {
				d.state(2, "Last State", st.LastTerminationState)
			}
			d.line(2, "Ready:\t%s", map[bool]string{true: "True", false: "False"}[st.Ready])
			d.line(2, "Restart Count:\t%d", st.RestartCount)
		}
		d.resources(2, "Limits", c.Resources.Limits)
		d.resources(2, "Requests", c.Resources.Requests)
		for _, probe := range []struct {
			title string
			p     *corev1.Probe
		}{{"Liveness", c.LivenessProbe}, {"Readiness", c.ReadinessProbe}, {"Startup", c.StartupProbe}} {
			if probe.p != nil {
				d.line(2, "%s:\t%s", probe.title, describeProbe(probe.p))
			}
		}
		if len(c.Env) == 0 {
			d.line(2, "Environment:\t<none>")
		} else {
			d.line(2, "Environment:")
			for _, e := range c.Env {
				d.line(3, "%s:\t%s", e.Name, e.Value)
			}
		}
		if len(c.VolumeMounts) == 0 {
			d.line(2, "Mounts:\t<none>")
		} else {
			d.line(2, "Mounts:")
			for _, m := range c.VolumeMounts {
				flags := map[bool]string{true: "ro", false: "rw"}[m.ReadOnly]
				if m.SubPath != "" {
					flags += fmt.Sprintf(",path=%q", m.SubPath)
				}
				d.line(3, "%s from %s (%s)", m.MountPath, m.Name, flags)
			}
		}
	}
}

func (d *describer) state(level int, title string, s corev1.ContainerState) {
	switch {
	case s.Running != nil:
		d.line(level, "%s:\tRunning", title)
		d.line(level+1, "Started:\t%s", s.Running.StartedAt.Time.Format(time.RFC1123Z))
	case s.Waiting != nil:
		d.line(level, "%s:\tWaiting", title)
		if s.Waiting.Reason != "" { // kubectl shows no message here: events carry it
			d.line(level+1, "Reason:\t%s", s.Waiting.Reason)
		}
	case s.Terminated != nil:
		d.line(level, "%s:\tTerminated", title)
		if s.Terminated.Reason != "" {
			d.line(level+1, "Reason:\t%s", s.Terminated.Reason)
		}
		if s.Terminated.Message != "" {
			d.line(level+1, "Message:\t%s", s.Terminated.Message)
		}
		d.line(level+1, "Exit Code:\t%d", s.Terminated.ExitCode)
		d.line(level+1, "Started:\t%s", s.Terminated.StartedAt.Time.Format(time.RFC1123Z))
		d.line(level+1, "Finished:\t%s", s.Terminated.FinishedAt.Time.Format(time.RFC1123Z))
	default:
		d.line(level, "%s:\tWaiting", title)
	}
}

// resources prints a resource list under title, if it has any.
func (d *describer) resources(level int, title string, list corev1.ResourceList) {
	if len(list) == 0 {
		return
	}
	d.line(level, "%s:", title)
	for _, k := range slices.Sorted(maps.Keys(list)) {
		q := list[k]
		d.line(level+1, "%s:\t%s", k, q.String())
	}
}

// describeProbe is kubectl's one-line probe summary.
func describeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec %v %s", p.Exec.Command, attrs)
	case p.HTTPGet != nil:
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		host := p.HTTPGet.Host
		return fmt.Sprintf("http-get %s://%s:%s%s %s", scheme, host, p.HTTPGet.Port.String(), p.HTTPGet.Path, attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	case p.GRPC != nil:
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GRPC.Port, ptr.Deref(p.GRPC.Service, ""), attrs)
	}
	return "unknown " + attrs
}

func (d *describer) deployment(dep *appsv1.Deployment, owned []appsv1.ReplicaSet) {
	d.line(0, "Name:\t%s", dep.Name)
	d.line(0, "Namespace:\t%s", dep.Namespace)
	d.line(0, "CreationTimestamp:\t%s", dep.CreationTimestamp.Time.Format(time.RFC1123Z))
	d.labels(0, dep)
	d.line(0, "Selector:\t%s", metav1.FormatLabelSelector(dep.Spec.Selector))
	st := dep.Status
	d.line(0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable",
		ptr.Deref(dep.Spec.Replicas, 1), st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, st.UnavailableReplicas)
	d.line(0, "StrategyType:\t%s", dep.Spec.Strategy.Type)
	d.line(0, "MinReadySeconds:\t%d", dep.Spec.MinReadySeconds)
	if ru := dep.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil && ru.MaxSurge != nil {
		d.line(0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge", ru.MaxUnavailable, ru.MaxSurge)
	}
	d.template(dep.Spec.Template)
	if len(dep.Status.Conditions) > 0 {
		d.line(0, "Conditions:")
		d.line(1, "Type\tStatus\tReason")
		d.line(1, "----\t------\t------")
		for _, c := range dep.Status.Conditions {
			d.line(1, "%s \t%s\t%s", c.Type, c.Status, c.Reason)
		}
	}
	var oldRS []string
	newRS := "<none>"
	for _, rs := range owned {
		s := fmt.Sprintf("%s (%d/%d replicas created)", rs.Name, rs.Status.Replicas, ptr.Deref(rs.Spec.Replicas, 1))
		if rs.Annotations["deployment.kubernetes.io/revision"] == dep.Annotations["deployment.kubernetes.io/revision"] {
			newRS = s
		} else if rs.Status.Replicas > 0 {
			oldRS = append(oldRS, s)
		}
	}
	d.line(0, "OldReplicaSets:\t%s", orNone(strings.Join(oldRS, ", ")))
	d.line(0, "NewReplicaSet:\t%s", newRS)
}

func (d *describer) replicaSet(rs *appsv1.ReplicaSet, pods []corev1.Pod) {
	d.line(0, "Name:\t%s", rs.Name)
	d.line(0, "Namespace:\t%s", rs.Namespace)
	d.line(0, "Selector:\t%s", metav1.FormatLabelSelector(rs.Spec.Selector))
	d.labels(0, rs)
	if ref := metav1.GetControllerOf(rs); ref != nil {
		d.line(0, "Controlled By:\t%s/%s", ref.Kind, ref.Name)
	}
	d.line(0, "Replicas:\t%d current / %d desired", rs.Status.Replicas, ptr.Deref(rs.Spec.Replicas, 1))
	phases := map[corev1.PodPhase]int{}
	for _, p := range pods {
		phases[p.Status.Phase]++
	}
	d.line(0, "Pods Status:\t%d Running / %d Waiting / %d Succeeded / %d Failed",
		phases[corev1.PodRunning], phases[corev1.PodPending], phases[corev1.PodSucceeded], phases[corev1.PodFailed])
	d.template(rs.Spec.Template)
}

func (d *describer) node(n *corev1.Node, lease *coordinationv1.Lease, leaseErr error, pods []corev1.Pod) {
	d.line(0, "Name:\t%s", n.Name)
	var roles []string
	for k := range n.Labels {
		if role, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	d.line(0, "Roles:\t%s", orNone(strings.Join(roles, ",")))
	d.labels(0, n)
	d.line(0, "CreationTimestamp:\t%s", n.CreationTimestamp.Time.Format(time.RFC1123Z))
	if len(n.Spec.Taints) == 0 {
		d.line(0, "Taints:\t<none>")
	}
	for i, t := range n.Spec.Taints {
		title := "Taints:"
		if i > 0 {
			title = ""
		}
		d.line(0, "%s\t%s", title, t.ToString())
	}
	d.line(0, "Unschedulable:\t%t", n.Spec.Unschedulable)
	if leaseErr != nil {
		var apiErr *apiError
		if errors.As(leaseErr, &apiErr) {
			leaseErr = errors.New(apiErr.status.Message)
		}
		d.line(0, "Lease:\tFailed to get lease: %s", leaseErr)
	} else {
		d.line(0, "Lease:")
		d.line(1, "HolderIdentity:\t%s", orUnset(ptr.Deref(lease.Spec.HolderIdentity, "")))
		for _, t := range []struct {
			title string
			at    *metav1.MicroTime
		}{{"AcquireTime", lease.Spec.AcquireTime}, {"RenewTime", lease.Spec.RenewTime}} {
			at := "<unset>"
			if t.at != nil {
				at = t.at.Time.Format(time.RFC1123Z)
			}
			d.line(1, "%s:\t%s", t.title, at)
		}
	}
	if len(n.Status.Conditions) > 0 {
		d.line(0, "Conditions:")
		d.line(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
		d.line(1, "----\t------\t-----------------\t------------------\t------\t-------")
		for _, c := range n.Status.Conditions {
			d.line(1, "%s \t%s \t%s \t%s \t%s \t%s", c.Type, c.Status, c.LastHeartbeatTime.Time.Format(time.RFC1123Z),
				c.LastTransitionTime.Time.Format(time.RFC1123Z), c.Reason, c.Message)
		}
	}
	d.line(0, "Addresses:")
	for _, a := range n.Status.Addresses {
		d.line(1, "%s:\t%s", a.Type, a.Address)
	}
	d.resources(0, "Capacity", n.Status.Capacity)
	d.resources(0, "Allocatable", n.Status.Allocatable)
	i := n.Status.NodeInfo
	d.line(0, "System Info:")
	for _, f := range [][2]string{{"Machine ID", i.MachineID}, {"System UUID", i.SystemUUID}, {"Boot ID", i.BootID},
		{"Kernel Version", i.KernelVersion}, {"OS Image", i.OSImage}, {"Operating System", i.OperatingSystem},
		{"Architecture", i.Architecture}, {"Container Runtime Version", i.ContainerRuntimeVersion},
		{"Kubelet Version", i.KubeletVersion}, {"Kube-Proxy Version", i.KubeProxyVersion}} {
		d.line(1, "%s:\t%s", f[0], f[1])
	}
	if n.Spec.PodCIDR != "" {
		d.line(0, "PodCIDR:\t%s", n.Spec.PodCIDR)
		d.line(0, "PodCIDRs:\t%s", strings.Join(n.Spec.PodCIDRs, ","))
	}
	pods = slices.DeleteFunc(pods, func(p corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	d.line(0, "Non-terminated Pods:\t(%d in total)", len(pods))
	d.line(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
	d.line(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---")
	totals := map[string]*resource.Quantity{}
	for _, p := range pods {
		cells := []string{p.Namespace, p.Name, ""} // kubectl leaves an empty column after the name
		for _, k := range []string{"cpu/requests", "cpu/limits", "memory/requests", "memory/limits"} {
			q := podResource(p.Spec, k)
			if totals[k] == nil {
				totals[k] = resource.NewQuantity(0, q.Format)
			}
			totals[k].Add(q)
			cells = append(cells, percentOf(q, n.Status.Allocatable, k))
		}
		d.line(1, "%s\t%s", strings.Join(cells, "\t"), d.age(p.CreationTimestamp))
	}
	d.line(0, "Allocated resources:")
	d.line(1, "(Total limits may be over 100 percent, i.e., overcommitted.)")
	d.line(1, "Resource\tRequests\tLimits")
	d.line(1, "--------\t--------\t------")
	for _, r := range []string{"cpu", "memory", "ephemeral-storage"} {
		var cells []string
		for _, kind := range []string{"requests", "limits"} {
			q := resource.Quantity{}
			if t := totals[r+"/"+kind]; t != nil {
				q = *t
			}
			cells = append(cells, percentOf(q, n.Status.Allocatable, r+"/"+kind))
		}
		d.line(1, "%s\t%s", r, strings.Join(cells, "\t"))
	}
}

// podResource sums one resource ("cpu/requests") over a pod's containers.
func podResource(spec corev1.PodSpec, key string) resource.Quantity {
	name, kind, _ := strings.Cut(key, "/")
	var sum resource.Quantity
	for _, c := range spec.Containers {
		list := c.Resources.Requests
		if kind == "limits" {
			list = c.Resources.Limits
		}
		if q, ok := list[corev1.ResourceName(name)]; ok {
			sum.Add(q)
		}
	}
	return sum
}

// percentOf is "q (p%)" of the node's allocatable amount, as kubectl shows it.
func percentOf(q resource.Quantity, allocatable corev1.ResourceList, key string) string {
	name, _, _ := strings.Cut(key, "/")
	pct := int64(0)
	if a, ok := allocatable[corev1.ResourceName(name)]; ok && a.MilliValue() > 0 {
		pct = q.MilliValue() * 100 / a.MilliValue()
	}
	return fmt.Sprintf("%s (%d%%)", q.String(), pct)
}

// template prints a pod template as kubectl does under "Pod Template:".
func (d *describer) template(t corev1.PodTemplateSpec) {
	d.line(0, "Pod Template:")
	d.multiline(1, "Labels", "=", t.Labels)
	if len(t.Annotations) > 0 {
		d.multiline(1, "Annotations", ": ", t.Annotations)
	}
	if len(t.Spec.InitContainers) > 0 {
		d.line(1, "Init Containers:")
		d.containers(t.Spec.InitContainers, nil, " ")
	}
	d.line(1, "Containers:")
	d.containers(t.Spec.Containers, nil, " ")
	d.podSpecTail(1, t.Spec, "")
}

// generic prints what is left of any object as nested "Field: value" lines.
// (kubectl's generic describer: the metadata meta() did not print goes under Metadata).
func (d *describer) generic(obj store.Object) {
	data, _ := json.Marshal(obj)
	var m map[string]any
	json.Unmarshal(data, &m)
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"name", "namespace", "labels", "annotations", "managedFields"} {
			delete(md, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.value(0, fieldTitle(k), m[k])
	}
}

// value prints v under title: maps nested a level deeper, list items each starting
// with "- ".
func (d *describer) value(level int, title string, v any) {
	switch v := v.(type) {
	case map[string]any:
		d.line(level, "%s:", title)
		for _, k := range slices.Sorted(maps.Keys(v)) {
			d.value(level+1, fieldTitle(k), v[k])
		}
	case []any:
		d.line(level, "%s:", title)
		for _, item := range v {
			m, ok := item.(map[string]any)
			if !ok {
				d.line(level+1, "%v", item)
				continue
			}
			for i, k := range slices.Sorted(maps.Keys(m)) {
				prefix := "  "
				if i == 0 {
					prefix = "- "
				}
				d.value(level+1, prefix+fieldTitle(k), m[k])
			}
		}
	default:
		d.line(level, "%s:\t%v", title, v)
	}
}

// fieldTitle turns a JSON field name into kubectl's words: "apiVersion" → "API
// Version", "firstTimestamp" → "First Timestamp".
func fieldTitle(k string) string {
	var words []string
	start := 0
	for i := 1; i < len(k); i++ {
		if k[i] >= 'A' && k[i] <= 'Z' && !(k[i-1] >= 'A' && k[i-1] <= 'Z') {
			words = append(words, k[start:i])
			start = i
		}
	}
	words = append(words, k[start:])
	for i, w := range words {
		switch strings.ToUpper(w) {
		case "API", "URL", "UID", "OSB", "GUID":
			words[i] = strings.ToUpper(w)
		default:
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// events prints the events table, or <none>.
func (d *describer) events(events []corev1.Event) {
	if len(events) == 0 {
		d.line(0, "Events:\t<none>")
		return
	}
	d.line(0, "Events:")
	d.line(1, "Type\tReason\tAge\tFrom\tMessage")
	d.line(1, "----\t------\t----\t----\t-------")
	for _, e := range events {
		age := d.age(metav1.NewTime(eventTime(e)))
		if e.Count > 1 {
			age = fmt.Sprintf("%s (x%d over %s)", age, e.Count, d.age(e.FirstTimestamp))
		}
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		d.line(1, "%s\t%s\t%s\t%s\t%s", e.Type, e.Reason, age, from, strings.TrimSpace(e.Message))
	}
}
