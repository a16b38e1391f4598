package apiserver

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/store"
)

// A column of a server-side Table; wide columns (priority 1) show only with -o wide.
type column struct {
	name, typ string
	wide      bool
	cell      func(obj store.Object) any
}

type tableDef []column

var nameColumn = column{name: "Name", typ: "string", cell: func(o store.Object) any { return o.GetName() }}
var ageColumn = column{name: "Age", typ: "string", cell: func(o store.Object) any { return age(o.GetCreationTimestamp()) }}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// Table renders objects as a meta.k8s.io/v1 Table with kubectl's columns.
func (r *Resource) Table(objs []store.Object, withColumns bool, includeObject metav1.IncludeObjectPolicy) *metav1.Table {
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "Table"}}
	cols := r.columns()
	if withColumns {
		for _, c := range cols {
			prio := int32(0)
			if c.wide {
				prio = 1
			}
			t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{
				Name: c.name, Type: c.typ, Format: formatOf(c), Priority: prio})
		}
	}
	t.Rows = make([]metav1.TableRow, 0, len(objs))
	for _, o := range objs {
		row := metav1.TableRow{}
		for _, c := range cols {
			row.Cells = append(row.Cells, c.cell(o))
		}
		switch includeObject {
		case metav1.IncludeObject:
			row.Object = runtime.RawExtension{Object: o}
		case metav1.IncludeNone:
		default:
			row.Object = runtime.RawExtension{Object: partialMeta(o)}
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// columns orders a resource's columns as kubectl does: name, its own, age, then wide ones.
func (r *Resource) columns() tableDef {
	if r.Plural == "events" {
		return r.table
	}
	cols := tableDef{nameColumn}
	own := r.table
	if len(own) > 0 && own[0].name == "Name" { // a name column of its own
		cols, own = tableDef{own[0]}, own[1:]
	}
	for _, c := range own {
		if !c.wide {
			cols = append(cols, c)
		}
	}
	if !r.noAge {
		cols = append(cols, ageColumn)
	}
	for _, c := range own {
		if c.wide {
			cols = append(cols, c)
		}
	}
	return cols
}

func formatOf(c column) string {
	if c.name == "Name" {
		return "name"
	}
	return ""
}

func partialMeta(o store.Object) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"}}
	m.ObjectMeta = *o.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta)
	m.ManagedFields = nil
	return m
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var namespaceTable = tableDef{{name: "Status", typ: "string", cell: func(o store.Object) any {
	return string(o.(*corev1.Namespace).Status.Phase)
}}}

var podTable = tableDef{
	{name: "Ready", typ: "string", cell: func(o store.Object) any {
		p := o.(*corev1.Pod)
		ready := 0
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				ready++
			}
		}
		return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
	}},
	{name: "Status", typ: "string", cell: func(o store.Object) any { return podStatus(o.(*corev1.Pod)) }},
	{name: "Restarts", typ: "string", cell: func(o store.Object) any {
		n := int32(0)
		for _, cs := range o.(*corev1.Pod).Status.ContainerStatuses {
			n += cs.RestartCount
		}
		return strconv.Itoa(int(n))
	}},
	{name: "IP", typ: "string", wide: true, cell: func(o store.Object) any { return noneIfEmpty(o.(*corev1.Pod).Status.PodIP) }},
	{name: "Node", typ: "string", wide: true, cell: func(o store.Object) any { return noneIfEmpty(o.(*corev1.Pod).Spec.NodeName) }},
	{name: "Nominated Node", typ: "string", wide: true, cell: func(o store.Object) any {
		return noneIfEmpty(o.(*corev1.Pod).Status.NominatedNodeName)
	}},
	{name: "Readiness Gates", typ: "string", wide: true, cell: func(o store.Object) any { return "<none>" }},
}

// podStatus is kubectl's STATUS column: a waiting or terminated reason wins over the
// phase, and unfinished init containers show as Init:done/total or Init:<reason>.
func podStatus(p *corev1.Pod) string {
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for i, cs := range p.Status.InitContainerStatuses {
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case cs.State.Terminated != nil:
			reason = "Init:" + cs.State.Terminated.Reason
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		if p.DeletionTimestamp != nil {
			return "Terminating"
		}
		return reason
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			reason = cs.State.Terminated.Reason
		}
	}
	if p.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	if reason == "" {
		reason = string(corev1.PodPending)
	}
	return reason
}

var serviceTable = tableDef{
	{name: "Type", typ: "string", cell: func(o store.Object) any { return string(o.(*corev1.Service).Spec.Type) }},
	{name: "Cluster-IP", typ: "string", cell: func(o store.Object) any { return noneIfEmpty(o.(*corev1.Service).Spec.ClusterIP) }},
	{name: "External-IP", typ: "string", cell: func(o store.Object) any { return externalIP(o.(*corev1.Service)) }},
	{name: "Port(s)", typ: "string", cell: func(o store.Object) any { return servicePorts(o.(*corev1.Service)) }},
	{name: "Selector", typ: "string", wide: true, cell: func(o store.Object) any {
		return noneIfEmpty(labels.FormatLabels(o.(*corev1.Service).Spec.Selector))
	}},
}

func externalIP(s *corev1.Service) string {
	ips := append([]string(nil), s.Spec.ExternalIPs...)
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP+in.Hostname)
		}
		if len(ips) == 0 {
			return "<pending>"
		}
	}
	return noneIfEmpty(strings.Join(ips, ","))
}

func servicePorts(s *corev1.Service) string {
	var parts []string
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	return noneIfEmpty(strings.Join(parts, ","))
}

// firstThree joins up to three items the way kubectl shortens endpoint lists.
func firstThree(items []string) string {
	if len(items) == 0 {
		return "<none>"
	}
	if len(items) > 3 {
		return strings.Join(items[:3], ",") + fmt.Sprintf(" + %d more...", len(items)-3)
	}
	return strings.Join(items, ",")
}

var endpointsTable = tableDef{{name: "Endpoints", typ: "string", cell: func(o store.Object) any {
	var items []string
	for _, ss := range o.(*corev1.Endpoints).Subsets {
		for _, a := range ss.Addresses {
			if len(ss.Ports) == 0 {
				items = append(items, a.IP)
			}
			for _, p := range ss.Ports {
				items = append(items, fmt.Sprintf("%s:%d", a.IP, p.Port))
			}
		}
	}
	return firstThree(items)
}}}

var endpointSliceTable = tableDef{
	{name: "AddressType", typ: "string", cell: func(o store.Object) any { return string(o.(*discoveryv1.EndpointSlice).AddressType) }},
	{name: "Ports", typ: "string", cell: func(o store.Object) any {
		var ports []string
		for _, p := range o.(*discoveryv1.EndpointSlice).Ports {
			if p.Port == nil {
				ports = append(ports, "<unset>")
			} else {
				ports = append(ports, strconv.Itoa(int(*p.Port)))
			}
		}
		if len(ports) == 0 {
			return "<unset>"
		}
		return strings.Join(ports, ",")
	}},
	{name: "Endpoints", typ: "string", cell: func(o store.Object) any {
		var addrs []string
		for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
		if len(addrs) == 0 {
			return "<unset>"
		}
		return firstThree(addrs)
	}},
}

func containersAndImages(spec *corev1.PodSpec) (string, string) {
	var names, images []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func workloadWide(tmpl func(o store.Object) *corev1.PodSpec, sel func(o store.Object) *metav1.LabelSelector) tableDef {
	return tableDef{
		{name: "Containers", typ: "string", wide: true, cell: func(o store.Object) any { c, _ := containersAndImages(tmpl(o)); return c }},
		{name: "Images", typ: "string", wide: true, cell: func(o store.Object) any { _, i := containersAndImages(tmpl(o)); return i }},
		{name: "Selector", typ: "string", wide: true, cell: func(o store.Object) any {
			s, err := metav1.LabelSelectorAsSelector(sel(o))
			if err != nil || s.Empty() {
				return "<none>"
			}
			return s.String()
		}},
	}
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

var deploymentTable = append(tableDef{
	{name: "Ready", typ: "string", cell: func(o store.Object) any {
		d := o.(*appsv1.Deployment)
		return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
	}},
	{name: "Up-to-date", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.Deployment).Status.UpdatedReplicas) }},
	{name: "Available", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.Deployment).Status.AvailableReplicas) }},
}, workloadWide(
	func(o store.Object) *corev1.PodSpec { return &o.(*appsv1.Deployment).Spec.Template.Spec },
	func(o store.Object) *metav1.LabelSelector { return o.(*appsv1.Deployment).Spec.Selector })...)

var replicaSetTable = append(tableDef{
	{name: "Desired", typ: "integer", cell: func(o store.Object) any { return int64(replicas(o.(*appsv1.ReplicaSet).Spec.Replicas)) }},
	{name: "Current", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.ReplicaSet).Status.Replicas) }},
	{name: "Ready", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.ReplicaSet).Status.ReadyReplicas) }},
}, workloadWide(
	func(o store.Object) *corev1.PodSpec { return &o.(*appsv1.ReplicaSet).Spec.Template.Spec },
	func(o store.Object) *metav1.LabelSelector { return o.(*appsv1.ReplicaSet).Spec.Selector })...)

var leaseTable = tableDef{{name: "Holder", typ: "string", cell: func(o store.Object) any {
	return ptr.Deref(o.(*coordinationv1.Lease).Spec.HolderIdentity, "")
}}}

var eventTable = tableDef{
	{name: "Last Seen", typ: "string", cell: func(o store.Object) any {
		e := o.(*corev1.Event)
		if !e.LastTimestamp.IsZero() {
			return age(e.LastTimestamp)
		}
		return age(e.CreationTimestamp)
	}},
	{name: "Type", typ: "string", cell: func(o store.Object) any { return o.(*corev1.Event).Type }},
	{name: "Reason", typ: "string", cell: func(o store.Object) any { return o.(*corev1.Event).Reason }},
	{name: "Object", typ: "string", cell: func(o store.Object) any {
		io := o.(*corev1.Event).InvolvedObject
		return strings.ToLower(io.Kind) + "/" + io.Name
	}},
	{name: "Message", typ: "string", cell: func(o store.Object) any { return strings.TrimSpace(o.(*corev1.Event).Message) }},
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

var nodeTable = tableDef{
	{name: "Status", typ: "string", cell: func(o store.Object) any {
		n, status := o.(*corev1.Node), "Unknown"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				status = map[bool]string{true: "Ready", false: "NotReady"}[c.Status == corev1.ConditionTrue]
			}
		}
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		return status
	}},
	{name: "Roles", typ: "string", cell: func(o store.Object) any {
		var roles []string
		for k := range o.GetLabels() {
			if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
				roles = append(roles, r)
			}
		}
		return noneIfEmpty(strings.Join(roles, ","))
	}},
	{name: "Version", typ: "string", cell: func(o store.Object) any { return o.(*corev1.Node).Status.NodeInfo.KubeletVersion }},
	{name: "Internal-IP", typ: "string", wide: true, cell: func(o store.Object) any { return nodeAddress(o.(*corev1.Node), corev1.NodeInternalIP) }},
	{name: "External-IP", typ: "string", wide: true, cell: func(o store.Object) any { return nodeAddress(o.(*corev1.Node), corev1.NodeExternalIP) }},
	{name: "OS-Image", typ: "string", wide: true, cell: func(o store.Object) any { return o.(*corev1.Node).Status.NodeInfo.OSImage }},
	{name: "Kernel-Version", typ: "string", wide: true, cell: func(o store.Object) any { return o.(*corev1.Node).Status.NodeInfo.KernelVersion }},
	{name: "Container-Runtime", typ: "string", wide: true, cell: func(o store.Object) any { return o.(*corev1.Node).Status.NodeInfo.ContainerRuntimeVersion }},
}
