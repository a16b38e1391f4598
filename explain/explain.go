package explain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/minicluster/minicluster/index"
	"github.com/minicluster/minicluster/proxy"
)

// Config configures an Explainer.
type Config struct {
	Services coreinformers.ServiceInformer
	Slices   discoveryinformers.EndpointSliceInformer
	Pods     coreinformers.PodInformer
	// Client reads the events that say why a pod is not ready.
	Client        kubernetes.Interface
	Instance      string
	ProxyMode     string
	NodeName      string
	ClusterDomain string
	// ClusterDNS is the nameserver pods are given.
	ClusterDNS netip.Addr
	// NetnsName names a pod's network namespace (its resolv.conf is under /etc/netns).
	NetnsName func(ns, pod string) string
	// Runner runs nft and iptables-save (nil: the real ones).
	Runner proxy.Runner
}

// Explainer answers explain requests from the cluster's state and the kernel's rules.
type Explainer struct {
	cfg        Config
	services   corelisters.ServiceLister
	sliceIndex cache.Indexer
	pods       corelisters.PodLister
	synced     []cache.InformerSynced
	dnsPort    string // "53"; tests ask a server of their own
}

// New builds an explainer; Run waits for its informers.
func New(cfg Config) (*Explainer, error) {
	if cfg.Services == nil || cfg.Slices == nil || cfg.Pods == nil || cfg.Client == nil || !cfg.ClusterDNS.IsValid() {
		return nil, errors.New("explain: informers, client and cluster DNS address are required")
	}
	if cfg.Runner == nil {
		cfg.Runner = proxy.Exec{}
	}
	if cfg.ProxyMode == "" {
		cfg.ProxyMode = proxy.ModeIPTables
	}
	if err := index.AddSlicesByService(cfg.Slices.Informer()); err != nil {
		return nil, err
	}
	return &Explainer{cfg: cfg, services: cfg.Services.Lister(), sliceIndex: cfg.Slices.Informer().GetIndexer(), pods: cfg.Pods.Lister(),
		dnsPort: "53",
		synced: []cache.InformerSynced{cfg.Services.Informer().HasSynced, cfg.Slices.Informer().HasSynced,
			cfg.Pods.Informer().HasSynced}}, nil
}

// Run waits until the informers have synced, then until ctx ends.
func (e *Explainer) Run(ctx context.Context) error {
	cache.WaitForCacheSync(ctx.Done(), e.synced...)
	<-ctx.Done()
	return nil
}

// Request is what to explain.
type Request struct {
	// Target is a DNS name as a pod would type it, svc/NAME, a ClusterIP, a pod IP or
	// NODE:NODEPORT, each with an optional :PORT.
	Target string
	// Namespace is the client pod's namespace when From is empty (default "default").
	Namespace string
	// From is a pod ([namespace/]name) whose search path and node are used.
	From string
}

// ServeHTTP answers GET ?target=…&namespace=…&from=… with the Path as JSON, or as
// text with format=text.
func (e *Explainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path, err := e.Explain(r.Context(), Request{Target: q.Get("target"), Namespace: q.Get("namespace"), From: q.Get("from")})
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Message: err.Error(), Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest})
		return
	}
	if q.Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(path.Text()))
		return
	}
	json.NewEncoder(w).Encode(path)
}

// explanation is one request being worked out.
type explanation struct {
	*Explainer
	ctx    context.Context
	p      *Path
	from   *corev1.Pod
	kernel *reader
	// host is the pod hostname a name of a headless service's pod names.
	host string
}

// Explain works out the path to req.Target.
func (e *Explainer) Explain(ctx context.Context, req Request) (*Path, error) {
	target := strings.TrimSpace(req.Target)
	if target == "" {
		return nil, errors.New("a target is required: a name, svc/NAME, an IP or NODE:NODEPORT, each with an optional :PORT")
	}
	x := &explanation{Explainer: e, ctx: ctx, p: &Path{Target: target, Namespace: req.Namespace},
		kernel: &reader{run: e.cfg.Runner, mode: e.cfg.ProxyMode, instance: e.cfg.Instance}}
	if x.p.Namespace == "" {
		x.p.Namespace = metav1.NamespaceDefault
	}
	if req.From != "" {
		ns, name, ok := strings.Cut(req.From, "/")
		if !ok {
			ns, name = x.p.Namespace, req.From
		}
		pod, err := e.pods.Pods(ns).Get(name)
		if err != nil {
			return nil, fmt.Errorf("--from: pod %s/%s not found", ns, name)
		}
		x.from, x.p.From, x.p.Namespace = pod, ns+"/"+name, ns
	}
	host, port := splitPort(target)
	switch {
	case strings.HasPrefix(host, "svc/") || strings.HasPrefix(host, "service/") || strings.HasPrefix(host, "services/"):
		_, name, _ := strings.Cut(host, "/")
		svc, err := e.services.Services(x.p.Namespace).Get(name)
		if err != nil {
			x.p.Problems = append(x.p.Problems, fmt.Sprintf("service %s/%s not found%s", x.p.Namespace, name, x.suggest(name)))
			break
		}
		x.service(svc, port, "")
	default:
		if ip, err := netip.ParseAddr(host); err == nil {
			x.address(ip, port)
		} else if port != 0 && x.isNode(host) {
			x.nodePort(port)
		} else {
			x.name(host, port)
		}
	}
	x.verdict()
	return x.p, nil
}

// splitPort splits "host:port" (a port is all digits); port 0 when none is given.
func splitPort(target string) (string, int32) {
	i := strings.LastIndexByte(target, ':')
	if i < 0 || strings.Count(target, ":") > 1 {
		return target, 0
	}
	n, err := strconv.ParseUint(target[i+1:], 10, 16)
	if err != nil {
		return target, 0
	}
	return target[:i], int32(n)
}

func (x *explanation) isNode(host string) bool {
	return host == x.cfg.NodeName || host == "localhost" || host == "node"
}

// resolvConf is the client pod's resolver configuration: its own file with --from,
// else what the node agent gives a ClusterFirst pod in the namespace.
func (x *explanation) resolvConf() (nameserver string, search []string, ndots int) {
	nameserver, ndots = x.cfg.ClusterDNS.String(), 5
	search = []string{x.p.Namespace + ".svc." + x.cfg.ClusterDomain, "svc." + x.cfg.ClusterDomain, x.cfg.ClusterDomain}
	if x.from == nil || x.cfg.NetnsName == nil {
		return
	}
	data, err := os.ReadFile(filepath.Join("/etc/netns", x.cfg.NetnsName(x.from.Namespace, x.from.Name), "resolv.conf"))
	if err != nil {
		return
	}
	var servers []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "nameserver":
			servers = append(servers, f[1])
		case len(f) > 0 && (f[0] == "search" || f[0] == "domain"):
			search = f[1:]
		case len(f) > 1 && f[0] == "options":
			for _, o := range f[1:] {
				if v, ok := strings.CutPrefix(o, "ndots:"); ok {
					ndots, _ = strconv.Atoi(v)
				}
			}
		}
	}
	if len(servers) > 0 {
		nameserver = servers[0]
	}
	return
}

// name resolves a DNS name as the client pod's resolver would, then follows what it
// resolved to.
func (x *explanation) name(name string, port int32) {
	server, search, ndots := x.resolvConf()
	d := &DNS{Nameserver: server, Search: search, Ndots: ndots}
	x.p.DNS = d
	var candidates []string
	switch {
	case strings.HasSuffix(name, "."):
		candidates = []string{name}
	case strings.Count(name, ".") >= ndots:
		candidates = append([]string{name + "."}, withSearch(name, search)...)
	default:
		candidates = append(withSearch(name, search), name+".")
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	var answer *Query
	for _, cand := range candidates {
		q := Query{Name: cand, Type: "A"}
		m := new(dns.Msg)
		m.SetQuestion(cand, dns.TypeA)
		r, _, err := c.ExchangeContext(x.ctx, m, net.JoinHostPort(server, x.dnsPort))
		if err != nil {
			q.Error = err.Error()
			d.Queries = append(d.Queries, q)
			x.p.Problems = append(x.p.Problems, fmt.Sprintf("the nameserver %s did not answer: %v", server, err))
			return
		}
		q.Rcode = dns.RcodeToString[r.Rcode]
		for _, rr := range r.Answer {
			h := rr.Header()
			data := strings.TrimPrefix(rr.String(), h.String())
			q.Answers = append(q.Answers, Record{Name: h.Name, Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl, Data: data})
		}
		d.Queries = append(d.Queries, q)
		if r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			answer = &d.Queries[len(d.Queries)-1]
			d.Answered = cand
			break
		}
	}
	if answer == nil {
		first := strings.SplitN(strings.TrimSuffix(name, "."), ".", 2)[0]
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("name not found: %s%s", name, x.suggest(first)))
		return
	}
	// The name the answer belongs to says which object it is.
	if svc := x.serviceOfName(d.Answered); svc != nil {
		if host, _, _ := strings.Cut(d.Answered, "."); host != svc.Name {
			x.host = host
			x.p.Notes = append(x.p.Notes, fmt.Sprintf("%s names one pod of headless service %s: the one whose hostname is %s", d.Answered, svc.Name, host))
		}
		x.service(svc, port, "")
		return
	}
	for _, rr := range answer.Answers {
		if rr.Type == "A" {
			if ip, err := netip.ParseAddr(rr.Data); err == nil {
				x.address(ip, port)
				return
			}
		}
	}
}

func withSearch(name string, search []string) []string {
	var out []string
	for _, s := range search {
		out = append(out, name+"."+strings.TrimSuffix(s, ".")+".")
	}
	return out
}

// serviceOfName finds the service a cluster name belongs to: <svc>.<ns>.svc.<domain>,
// or <host>.<svc>.<ns>.svc.<domain> (a pod of a headless service).
func (x *explanation) serviceOfName(fqdn string) *corev1.Service {
	rest, ok := strings.CutSuffix(strings.TrimSuffix(fqdn, "."), ".svc."+x.cfg.ClusterDomain)
	if !ok {
		return nil
	}
	labels := strings.Split(rest, ".")
	if len(labels) < 2 {
		return nil
	}
	svc, err := x.services.Services(labels[len(labels)-1]).Get(labels[len(labels)-2])
	if err != nil {
		return nil
	}
	return svc
}

// suggest names services that the user may have meant: the same name in another
// namespace, or a name a letter or two away in this one.
func (x *explanation) suggest(name string) string {
	all, _ := x.services.List(labels.Everything())
	var near []string
	for _, s := range all {
		switch {
		case s.Name == name && s.Namespace != x.p.Namespace:
			near = append(near, s.Name+"."+s.Namespace)
		case s.Namespace == x.p.Namespace && s.Name != name && distance(s.Name, name) <= 2:
			near = append(near, s.Name)
		}
	}
	slices.Sort(near)
	if len(near) == 0 {
		return ""
	}
	return ": did you mean " + strings.Join(near, " or ") + "?"
}

// distance is the edit distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// address follows an IP: a service's ClusterIP or externalIP, or a pod's address.
func (x *explanation) address(ip netip.Addr, port int32) {
	all, _ := x.services.List(labels.Everything())
	slices.SortFunc(all, func(a, b *corev1.Service) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	for _, s := range all {
		if slices.Contains(s.Spec.ClusterIPs, ip.String()) || s.Spec.ClusterIP == ip.String() {
			x.service(s, port, "")
			return
		}
	}
	for _, s := range all {
		if slices.Contains(s.Spec.ExternalIPs, ip.String()) {
			x.service(s, port, ip.String())
			return
		}
	}
	pods, _ := x.pods.List(labels.Everything())
	for _, p := range pods {
		if p.Status.PodIP == ip.String() && !p.Spec.HostNetwork {
			x.pod(p)
			return
		}
	}
	x.p.Problems = append(x.p.Problems, fmt.Sprintf("%s is no service's ClusterIP or externalIP and no pod's address", ip))
}

// nodePort follows a connection to a node address and NodePort.
func (x *explanation) nodePort(port int32) {
	all, _ := x.services.List(labels.Everything())
	for _, s := range all {
		for _, sp := range s.Spec.Ports {
			if sp.NodePort == port {
				x.servicePorts(s, []corev1.ServicePort{sp}, "nodePort", "")
				return
			}
		}
	}
	x.p.Problems = append(x.p.Problems, fmt.Sprintf("no service has nodePort %d", port))
}

// pod describes the pod at the target address.
func (x *explanation) pod(p *corev1.Pod) {
	out := &Pod{Namespace: p.Namespace, Name: p.Name, IP: p.Status.PodIP, Node: p.Spec.NodeName, Phase: string(p.Status.Phase), Ready: podReady(p)}
	if !out.Ready {
		out.NotReady = x.whyNotReady(p)
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("pod %s is not Ready: %s", p.Name, out.NotReady))
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			s := fmt.Sprintf("%s/%d/%s", c.Name, cp.ContainerPort, cp.Protocol)
			if cp.Name != "" {
				s = fmt.Sprintf("%s/%s:%d/%s", c.Name, cp.Name, cp.ContainerPort, cp.Protocol)
			}
			out.Ports = append(out.Ports, s)
		}
	}
	all, _ := x.services.List(labels.Everything())
	for _, s := range all {
		if s.Namespace == p.Namespace && len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
			out.SelectedBy = append(out.SelectedBy, s.Namespace+"/"+s.Name)
		}
	}
	slices.Sort(out.SelectedBy)
	x.p.Pod = out
	x.p.Notes = append(x.p.Notes, "a pod's address is reached directly, across the bridge: no proxy rule is involved")
}

// service follows a service to its ports; externalIP is set when the connection goes
// to one of its externalIPs.
func (x *explanation) service(s *corev1.Service, port int32, externalIP string) {
	ports := s.Spec.Ports
	if port != 0 {
		ports = slices.DeleteFunc(slices.Clone(ports), func(sp corev1.ServicePort) bool { return sp.Port != port })
		if len(ports) == 0 && s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone {
			var have []string
			for _, sp := range s.Spec.Ports {
				have = append(have, fmt.Sprintf("%d/%s", sp.Port, sp.Protocol))
			}
			x.p.Problems = append(x.p.Problems, fmt.Sprintf("service %s has no port %d (it has %s): the connection is refused", s.Name, port, strings.Join(have, ", ")))
		}
	}
	x.servicePorts(s, ports, "clusterIP", externalIP)
}

func (x *explanation) servicePorts(s *corev1.Service, ports []corev1.ServicePort, via, externalIP string) {
	out := Service{Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type), ClusterIP: s.Spec.ClusterIP,
		ExternalName: s.Spec.ExternalName, Headless: s.Spec.ClusterIP == corev1.ClusterIPNone,
		DNSNames: []string{s.Name + "." + s.Namespace + ".svc." + x.cfg.ClusterDomain}}
	if len(s.Spec.Selector) > 0 {
		out.Selector = labels.SelectorFromSet(s.Spec.Selector).String()
	}
	if s.Namespace == x.p.Namespace {
		out.DNSNames = append([]string{s.Name, s.Name + "." + s.Namespace}, out.DNSNames...)
	} else {
		out.DNSNames = append([]string{s.Name + "." + s.Namespace}, out.DNSNames...)
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		out.SessionAffinity = string(s.Spec.SessionAffinity)
		out.AffinityTimeout = corev1.DefaultClientIPServiceAffinitySeconds
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			out.AffinityTimeout = *c.ClientIP.TimeoutSeconds
		}
	}
	out.ExternalTrafficPolicy = string(s.Spec.ExternalTrafficPolicy)
	if p := s.Spec.InternalTrafficPolicy; p != nil {
		out.InternalTrafficPolicy = string(*p)
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		x.p.Notes = append(x.p.Notes, fmt.Sprintf("service %s is an alias (ExternalName): DNS answers a CNAME for %s, and no proxy rule is involved — the client connects wherever that name resolves", s.Name, s.Spec.ExternalName))
		x.p.Services = append(x.p.Services, out)
		return
	}
	if out.Headless {
		x.p.Notes = append(x.p.Notes, fmt.Sprintf("service %s is headless: its name resolves to the ready pods' own addresses, and no proxy rule is involved", s.Name))
	}
	sls := x.slicesOf(s)
	for _, sp := range ports {
		pt := Port{Name: sp.Name, Port: sp.Port, Protocol: string(sp.Protocol), TargetPort: sp.TargetPort.String(), NodePort: sp.NodePort, Via: via}
		if !out.Headless {
			ip, nodePort := s.Spec.ClusterIP, via == "nodePort"
			if externalIP != "" {
				ip = externalIP
			}
			port := sp.Port
			if nodePort {
				port = sp.NodePort
			}
			kp := x.kernel.service(ip, strings.ToLower(string(sp.Protocol)), port, nodePort)
			pt.Kernel = &kp.Kernel
			pt.Endpoints = x.endpoints(s, sp, sls, kp.targets)
		} else {
			pt.Endpoints = x.endpoints(s, sp, sls, nil)
		}
		x.diagnose(s, sp, &pt)
		out.Ports = append(out.Ports, pt)
	}
	x.p.Services = append(x.p.Services, out)
}

func (x *explanation) slicesOf(s *corev1.Service) []*discoveryv1.EndpointSlice {
	return index.SlicesOf(x.sliceIndex, s.Namespace, s.Name)
}

// endpoints lists the endpoints of service port sp from the slices, with the chance
// the kernel gives each (targets: "ip:port" → probability; nil for a headless service,
// where the client picks among the DNS answers).
func (x *explanation) endpoints(s *corev1.Service, sp corev1.ServicePort, sls []*discoveryv1.EndpointSlice, targets map[string]float64) []Endpoint {
	var out []Endpoint
	for _, sl := range sls {
		var port int32 = -1
		for _, p := range sl.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil {
				port = *p.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			c := ep.Conditions
			e := Endpoint{Address: net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port))),
				Ready: c.Ready == nil || *c.Ready, Serving: c.Serving == nil || *c.Serving, Terminating: c.Terminating != nil && *c.Terminating}
			if ep.NodeName != nil {
				e.Node = *ep.NodeName
			}
			if targets != nil {
				e.Probability = targets[e.Address]
			}
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
				e.Pod = r.Namespace + "/" + r.Name
				if pod, err := x.pods.Pods(r.Namespace).Get(r.Name); err == nil {
					e.Container = containerOf(pod, sp.TargetPort, port)
					if !podReady(pod) {
						e.NotReady = x.whyNotReady(pod)
					}
				}
			}
			out = append(out, e)
		}
	}
	if targets == nil && len(out) > 0 { // headless: the client picks among the ready pods DNS answers
		ready := 0
		for _, e := range out {
			if e.Ready {
				ready++
			}
		}
		for i := range out {
			if out[i].Ready {
				out[i].Probability = 1 / float64(ready)
			}
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.Pod+" "+a.Address, b.Pod+" "+b.Address) })
	return out
}

// containerOf names the container of pod that serves port (by the service's targetPort).
func containerOf(pod *corev1.Pod, target intstr.IntOrString, port int32) string {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if target.Type == intstr.String && cp.Name == target.StrVal || cp.ContainerPort == port {
				return c.Name
			}
		}
	}
	if len(pod.Spec.Containers) == 1 {
		return pod.Spec.Containers[0].Name
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// whyNotReady says why a pod is not ready, in the kubelet's words where it has some.
func (x *explanation) whyNotReady(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "it is terminating"
	}
	if p.Status.Phase == corev1.PodPending && len(p.Status.ContainerStatuses) == 0 {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
				return "not scheduled: " + c.Message
			}
		}
		return "pending: " + p.Status.Message
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			return fmt.Sprintf("container %s is waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			return fmt.Sprintf("container %s terminated: %s (exit code %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		case !cs.Ready:
			if m := x.lastProbeFailure(p, "Readiness"); m != "" {
				return "container " + cs.Name + ": " + m
			}
			return fmt.Sprintf("container %s is running but not ready (its readiness probe has not passed)", cs.Name)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Message != "" {
			return c.Message
		}
	}
	return "its Ready condition is not True"
}

// lastProbeFailure is the message of the pod's latest "<kind> probe failed" event.
func (x *explanation) lastProbeFailure(p *corev1.Pod, kind string) string {
	sel := fields.Set{"involvedObject.name": p.Name, "involvedObject.uid": string(p.UID), "reason": "Unhealthy"}.AsSelector().String()
	evs, err := x.cfg.Client.CoreV1().Events(p.Namespace).List(x.ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return ""
	}
	var last *corev1.Event
	for i := range evs.Items {
		ev := &evs.Items[i]
		if !strings.HasPrefix(ev.Message, kind+" probe failed") {
			continue
		}
		if last == nil || ev.LastTimestamp.After(last.LastTimestamp.Time) {
			last = ev
		}
	}
	if last == nil {
		return ""
	}
	return strings.ToLower(last.Message[:1]) + last.Message[1:]
}

// diagnose adds what breaks the path of one port, and why.
func (x *explanation) diagnose(s *corev1.Service, sp corev1.ServicePort, pt *Port) {
	used := 0
	for _, e := range pt.Endpoints {
		if e.Probability > 0 {
			used++
		}
	}
	port := fmt.Sprintf("port %d/%s", sp.Port, sp.Protocol)
	if pt.Via == "nodePort" {
		port = fmt.Sprintf("nodePort %d/%s", sp.NodePort, sp.Protocol)
	}
	if pt.Kernel != nil && pt.Kernel.Verdict == "none" {
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("no kernel rule for %s %s: the proxy has not programmed it", s.Name, port))
		return
	}
	if used > 0 {
		if pt.Kernel != nil && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && pt.Via == "nodePort" {
			x.p.Notes = append(x.p.Notes, fmt.Sprintf("externalTrafficPolicy Local: %s goes only to endpoints on node %s, and the client's address is kept", port, x.cfg.NodeName))
		}
		return
	}
	verdict := "refused at once (the kernel rejects it)"
	if pt.Kernel != nil && pt.Kernel.Verdict == "drop" {
		verdict = "dropped (the traffic policy leaves no endpoint on this node)"
	}
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		verdict = "answered with no address by DNS"
	}
	if len(pt.Endpoints) > 0 {
		var why []string
		for _, e := range pt.Endpoints {
			if e.NotReady != "" {
				why = append(why, fmt.Sprintf("pod %s is not Ready: %s", strings.TrimPrefix(e.Pod, s.Namespace+"/"), e.NotReady))
			}
		}
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("no ready endpoints for %s %s, so a connection is %s: %s", s.Name, port, verdict, strings.Join(why, "; ")))
		return
	}
	if len(s.Spec.Selector) == 0 {
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("service %s has no selector and no endpoints: a connection is %s", s.Name, verdict))
		return
	}
	pods, _ := x.pods.Pods(s.Namespace).List(labels.SelectorFromSet(s.Spec.Selector))
	if len(pods) == 0 {
		x.p.Problems = append(x.p.Problems, fmt.Sprintf("no pod matches the selector %s in namespace %s, so %s has no endpoints and a connection is %s",
			labels.SelectorFromSet(s.Spec.Selector), s.Namespace, port, verdict))
		return
	}
	if sp.TargetPort.Type == intstr.String {
		var lacking []string
		for _, p := range pods {
			if containerOf(p, sp.TargetPort, -1) == "" || !hasNamedPort(p, sp.TargetPort.StrVal) {
				lacking = append(lacking, p.Name)
			}
		}
		if len(lacking) == len(pods) {
			slices.Sort(lacking)
			x.p.Problems = append(x.p.Problems, fmt.Sprintf("targetPort %s: pod %s has no port named %s, so %s has no endpoints and a connection is %s",
				sp.TargetPort.StrVal, strings.Join(lacking, ", "), sp.TargetPort.StrVal, port, verdict))
			return
		}
	}
	var why []string
	for _, p := range pods {
		if !podReady(p) {
			why = append(why, fmt.Sprintf("pod %s is not Ready: %s", p.Name, x.whyNotReady(p)))
		}
	}
	slices.Sort(why)
	x.p.Problems = append(x.p.Problems, fmt.Sprintf("no ready endpoints for %s %s, so a connection is %s: %s", s.Name, port, verdict, strings.Join(why, "; ")))
}

func hasNamedPort(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return true
			}
		}
	}
	return false
}

// verdict sums the path up in one line.
func (x *explanation) verdict() {
	p := x.p
	switch {
	case len(p.Problems) > 0:
		p.Verdict = "BROKEN: " + p.Problems[0]
	case p.Pod != nil:
		p.Verdict = fmt.Sprintf("OK: %s is pod %s/%s, reached directly", p.Target, p.Pod.Namespace, p.Pod.Name)
	case len(p.Services) > 0:
		s := p.Services[0]
		switch {
		case s.ExternalName != "":
			p.Verdict = fmt.Sprintf("OK: %s is an alias for %s", p.Target, s.ExternalName)
		default:
			if len(s.Ports) == 0 {
				p.Verdict = fmt.Sprintf("OK: %s names service %s/%s, which has no ports", p.Target, s.Namespace, s.Name)
				return
			}
			ready := 0
			for _, e := range s.Ports[0].Endpoints {
				if e.Probability > 0 {
					ready++
				}
			}
			if x.host != "" {
				p.Verdict = fmt.Sprintf("OK: %s is the address of one pod (hostname %s) of headless service %s/%s, reached directly", p.Target, x.host, s.Namespace, s.Name)
				return
			}
			how := "through the proxy's rules"
			if s.Headless {
				how = "directly, by the addresses DNS answers"
			}
			p.Verdict = fmt.Sprintf("OK: a connection to %s reaches one of %d ready endpoint(s) of service %s/%s, %s", p.Target, ready, s.Namespace, s.Name, how)
			if len(s.Ports) > 1 {
				p.Verdict = fmt.Sprintf("OK: %s reaches ready endpoints of service %s/%s on each of its %d ports, %s", p.Target, s.Namespace, s.Name, len(s.Ports), how)
			}
		}
	default:
		p.Verdict = "BROKEN: nothing answers " + p.Target
	}
}
