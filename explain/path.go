// Package explain shows the path a connection from a pod takes to a name or address:
// the DNS lookup through the pod's search path, the Service and port, the kernel rule
// the proxy programmed (read back from the kernel), each endpoint with its conditions
// and chance of being picked, and the pod behind it — and where the path breaks.
package explain

import (
	"fmt"
	"strings"
)

// Path is the answer to one explain request; -o json prints it as it is.
type Path struct {
	Target string `json:"target"`
	// From is the pod whose view is taken (namespace/name), or "" for a pod in Namespace.
	From      string `json:"from,omitempty"`
	Namespace string `json:"namespace"`
	DNS       *DNS   `json:"dns,omitempty"`
	// Services are those the target reaches (one, except for a pod selected by several).
	Services []Service `json:"services,omitempty"`
	Pod      *Pod      `json:"pod,omitempty"` // the target is a pod's address
	// Problems say where the path breaks, most important first.
	Problems []string `json:"problems,omitempty"`
	// Notes are facts about the path that are not faults.
	Notes   []string `json:"notes,omitempty"`
	Verdict string   `json:"verdict"`
}

// DNS is the lookup a pod's resolver makes.
type DNS struct {
	Nameserver string   `json:"nameserver"`
	Search     []string `json:"search"`
	Ndots      int      `json:"ndots"`
	Queries    []Query  `json:"queries"`
	// Answered is the name that answered ("" when none did).
	Answered string `json:"answered,omitempty"`
}

// Query is one question the resolver asks, in order, and the server's answer.
type Query struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Rcode   string   `json:"rcode"`
	Answers []Record `json:"answers,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Record is one answer record.
type Record struct {
	Name string `json:"name"`
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
}

// Service is a Service on the path.
type Service struct {
	Namespace             string   `json:"namespace"`
	Name                  string   `json:"name"`
	Type                  string   `json:"type"`
	ClusterIP             string   `json:"clusterIP,omitempty"`
	ExternalName          string   `json:"externalName,omitempty"`
	Headless              bool     `json:"headless,omitempty"`
	Selector              string   `json:"selector,omitempty"`
	SessionAffinity       string   `json:"sessionAffinity,omitempty"`
	AffinityTimeout       int32    `json:"affinityTimeoutSeconds,omitempty"`
	ExternalTrafficPolicy string   `json:"externalTrafficPolicy,omitempty"`
	InternalTrafficPolicy string   `json:"internalTrafficPolicy,omitempty"`
	DNSNames              []string `json:"dnsNames"`
	Ports                 []Port   `json:"ports"`
}

// Port is one port of a Service and where its traffic goes.
type Port struct {
	Name       string `json:"name,omitempty"`
	Port       int32  `json:"port"`
	Protocol   string `json:"protocol"`
	TargetPort string `json:"targetPort"`
	NodePort   int32  `json:"nodePort,omitempty"`
	// Via is how the connection arrives: "clusterIP" or "nodePort".
	Via string `json:"via"`
	// Kernel is the proxy's rules for this port as the kernel has them.
	Kernel    *Kernel    `json:"kernel,omitempty"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Kernel is what the kernel does with a new connection to the port.
type Kernel struct {
	Mode string `json:"mode"`
	// Rules are the kernel's own lines for this port, in the order a packet meets them.
	Rules []string `json:"rules"`
	// Verdict is "dnat", "reject", "drop" or "none" (no rule: the packet is not proxied).
	Verdict string `json:"verdict"`
}

// Endpoint is one endpoint of a port.
type Endpoint struct {
	Address     string `json:"address"` // ip:port
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
	// Probability of being picked for a new connection, from the kernel's rules.
	Probability float64 `json:"probability"`
	Pod         string  `json:"pod,omitempty"` // namespace/name
	Container   string  `json:"container,omitempty"`
	Node        string  `json:"node,omitempty"`
	// NotReady says why the pod is not ready, when it is not.
	NotReady string `json:"notReady,omitempty"`
}

// Pod is the pod at the target address.
type Pod struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IP        string   `json:"ip"`
	Node      string   `json:"node"`
	Phase     string   `json:"phase"`
	Ready     bool     `json:"ready"`
	NotReady  string   `json:"notReady,omitempty"`
	Ports     []string `json:"ports,omitempty"` // container/name:port/proto
	// SelectedBy are the services whose selector picks the pod.
	SelectedBy []string `json:"selectedBy,omitempty"`
}

// Text renders the path for people.
func (p *Path) Text() string {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	who := "a pod in namespace " + p.Namespace
	if p.From != "" {
		who = "pod " + p.From
	}
	w(0, "%s, as %s sees it", p.Target, who)
	if d := p.DNS; d != nil {
		w(0, "")
		w(0, "DNS  nameserver %s, search %s, ndots:%d", d.Nameserver, strings.Join(d.Search, " "), d.Ndots)
		for _, q := range d.Queries {
			switch {
			case q.Error != "":
				w(1, "%-50s %-5s %s", q.Name, q.Type, q.Error)
			case len(q.Answers) == 0:
				w(1, "%-50s %-5s %s", q.Name, q.Type, q.Rcode)
			default:
				for i, r := range q.Answers {
					name := q.Name
					if i > 0 {
						name = ""
					}
					w(1, "%-50s %-5s %s  (ttl %ds, record %s %s)", name, r.Type, r.Data, r.TTL, r.Name, r.Type)
				}
			}
		}
	}
	for _, s := range p.Services {
		w(0, "")
		kind := s.Type
		if s.Headless {
			kind = "headless"
		}
		line := fmt.Sprintf("Service %s/%s  %s", s.Namespace, s.Name, kind)
		switch {
		case s.ExternalName != "":
			line += "  externalName " + s.ExternalName
		case !s.Headless:
			line += "  clusterIP " + s.ClusterIP
		}
		if s.Selector != "" {
			line += "  selector " + s.Selector
		}
		w(0, "%s", line)
		if len(s.DNSNames) > 0 {
			w(1, "DNS names: %s", strings.Join(s.DNSNames, ", "))
		}
		if s.SessionAffinity == "ClientIP" {
			w(1, "session affinity: ClientIP, %ds (a client returns to the endpoint it had)", s.AffinityTimeout)
		}
		if s.ExternalTrafficPolicy != "" && s.ExternalTrafficPolicy != "Cluster" {
			w(1, "externalTrafficPolicy: %s (NodePort and external traffic keeps its source address and goes only to this node's endpoints)", s.ExternalTrafficPolicy)
		}
		if s.InternalTrafficPolicy == "Local" {
			w(1, "internalTrafficPolicy: Local (ClusterIP traffic goes only to endpoints on the client's node)")
		}
		for _, pt := range s.Ports {
			name := pt.Name
			if name == "" {
				name = "(unnamed)"
			}
			via := fmt.Sprintf("%d/%s", pt.Port, pt.Protocol)
			if pt.Via == "nodePort" {
				via = fmt.Sprintf("nodePort %d/%s", pt.NodePort, pt.Protocol)
			}
			w(1, "port %s %s → targetPort %s", name, via, pt.TargetPort)
			if k := pt.Kernel; k != nil {
				w(2, "kernel (%s): %s", k.Mode, k.Verdict)
				for _, r := range k.Rules {
					w(3, "%s", r)
				}
			}
			if len(pt.Endpoints) == 0 {
				w(2, "endpoints: none")
			} else {
				w(2, "endpoints:")
			}
			for _, e := range pt.Endpoints {
				cond := []string{}
				for _, c := range []struct {
					on   bool
					name string
				}{{e.Ready, "ready"}, {e.Serving, "serving"}, {e.Terminating, "terminating"}} {
					if c.on {
						cond = append(cond, c.name)
					}
				}
				if len(cond) == 0 {
					cond = append(cond, "not ready")
				}
				line := fmt.Sprintf("%-21s %-22s %5.1f%%", e.Address, strings.Join(cond, ","), 100*e.Probability)
				if e.Pod != "" {
					line += "  pod " + e.Pod
					if e.Container != "" {
						line += " container " + e.Container
					}
				}
				w(3, "%s", line)
				if e.NotReady != "" {
					w(4, "not ready: %s", e.NotReady)
				}
			}
		}
	}
	if pod := p.Pod; pod != nil {
		w(0, "")
		ready := "ready"
		if !pod.Ready {
			ready = "not ready"
		}
		w(0, "Pod %s/%s  %s  on %s  %s, %s", pod.Namespace, pod.Name, pod.IP, pod.Node, pod.Phase, ready)
		if pod.NotReady != "" {
			w(1, "not ready: %s", pod.NotReady)
		}
		if len(pod.Ports) > 0 {
			w(1, "ports: %s", strings.Join(pod.Ports, ", "))
		}
		if len(pod.SelectedBy) > 0 {
			w(1, "selected by: %s", strings.Join(pod.SelectedBy, ", "))
		}
	}
	if len(p.Notes) > 0 {
		w(0, "")
		for _, n := range p.Notes {
			w(0, "note: %s", n)
		}
	}
	if len(p.Problems) > 0 {
		w(0, "")
		for _, pr := range p.Problems {
			w(0, "BROKEN: %s", pr)
		}
	}
	if len(p.Problems) == 0 { // a broken path's verdict is its first problem, printed above
		w(0, "")
		w(0, "%s", p.Verdict)
	}
	return b.String()
}
