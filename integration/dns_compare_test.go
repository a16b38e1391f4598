//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// dnsFixtures are the services and pods the comparison with CoreDNS runs over: a
// ClusterIP service with two named ports and one with an unnamed port, a headless
// service with hostname/subdomain pods and one without, a headless service without
// endpoints, ExternalNames (to a service, to a headless service without endpoints,
// outside the cluster, in a loop, to itself), a service of the same name in another
// namespace.
const dnsFixtures = `apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: single}
spec:
  selector: {app: web}
  ports: [{port: 7000, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432, targetPort: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: db, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, labels: {app: db}}
spec:
  hostname: db-1
  subdomain: db
  containers: [{name: db, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-anon, labels: {app: db}}
spec:
  containers: [{name: db, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  clusterIP: None
  selector: {app: nothing}
  ports: [{name: x, port: 1}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: ext-empty}
spec: {type: ExternalName, externalName: empty.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {type: ExternalName, externalName: example.test}
---
apiVersion: v1
kind: Service
metadata: {name: loop-a}
spec: {type: ExternalName, externalName: loop-b.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: loop-b}
spec: {type: ExternalName, externalName: loop-a.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: self}
spec: {type: ExternalName, externalName: self.default.svc.cluster.local}
`

// dnsQuery is one question for both servers.
type dnsQuery struct {
	name  string
	qtype uint16
	class uint16
}

func (q dnsQuery) String() string {
	s := q.name + " " + mdns.TypeToString[q.qtype]
	if q.class != mdns.ClassINET {
		s += " " + mdns.ClassToString[q.class]
	}
	return s
}

// dnsQueries generates the questions from the cluster's objects as the API lists them:
// every service's name, each of its ports as _port._proto, each endpoint's name, the
// reverse name of every ClusterIP and endpoint address, every pod's dashed-IP name,
// plus names that do not exist, the zone's own names, and other classes.
func dnsQueries(t *testing.T, n *node) []dnsQuery {
	kubectl := n.kubectlFor(t)
	var svcs struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				ClusterIP string
				Ports     []struct {
					Name, Protocol string
				}
			}
		}
	}
	json.Unmarshal([]byte(kubectl("get", "svc", "-A", "-o", "json")), &svcs)
	var eps struct {
		Items []struct {
			Metadata struct {
				Namespace string
				Labels    map[string]string
			}
			Endpoints []struct {
				Addresses []string
				Hostname  string
			}
		}
	}
	json.Unmarshal([]byte(kubectl("get", "endpointslices", "-A", "-o", "json")), &eps)
	var pods struct {
		Items []struct {
			Metadata struct{ Namespace string }
			Status   struct{ PodIP string }
		}
	}
	json.Unmarshal([]byte(kubectl("get", "pods", "-A", "-o", "json")), &pods)

	var qs []dnsQuery
	add := func(name string, types ...uint16) {
		for _, typ := range types {
			qs = append(qs, dnsQuery{mdns.Fqdn(name), typ, mdns.ClassINET})
		}
	}
	reverse := func(ip string) string { r, _ := mdns.ReverseAddr(ip); return r }
	all := []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeTXT, mdns.TypeCNAME, mdns.TypePTR, mdns.TypeMX}
	for _, s := range svcs.Items {
		svc := s.Metadata.Name + "." + s.Metadata.Namespace + ".svc.cluster.local"
		add(svc, all...)
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				add("_"+p.Name+"._"+strings.ToLower(p.Protocol)+"."+svc, mdns.TypeSRV, mdns.TypeA)
			}
		}
		add("_nope._tcp."+svc, mdns.TypeSRV)
		add("x."+svc, mdns.TypeA)
		if ip := s.Spec.ClusterIP; ip != "" && ip != "None" {
			add(reverse(ip), mdns.TypePTR, mdns.TypeA)
		}
	}
	for _, s := range eps.Items {
		svc := s.Metadata.Labels["kubernetes.io/service-name"] + "." + s.Metadata.Namespace + ".svc.cluster.local"
		for _, e := range s.Endpoints {
			for _, ip := range e.Addresses {
				name := e.Hostname
				if name == "" {
					name = strings.ReplaceAll(ip, ".", "-")
				}
				add(name+"."+svc, mdns.TypeA, mdns.TypeSRV, mdns.TypeTXT)
				add(reverse(ip), mdns.TypePTR)
			}
		}
	}
	for _, p := range pods.Items {
		if ip := p.Status.PodIP; ip != "" {
			dashed := strings.ReplaceAll(ip, ".", "-")
			add(dashed+"."+p.Metadata.Namespace+".pod.cluster.local", mdns.TypeA, mdns.TypeAAAA, mdns.TypeTXT)
			add("x."+dashed+"."+p.Metadata.Namespace+".pod.cluster.local", mdns.TypeA)
		}
	}
	add("cluster.local", mdns.TypeSOA, mdns.TypeNS, mdns.TypeA, mdns.TypeTXT)
	add("ns.dns.cluster.local", mdns.TypeA, mdns.TypeAAAA)
	add("dns-version.cluster.local", mdns.TypeTXT)
	add("svc.cluster.local", mdns.TypeA)
	add("pod.cluster.local", mdns.TypeA)
	add("default.svc.cluster.local", mdns.TypeA, mdns.TypeSRV)
	add("default.pod.cluster.local", mdns.TypeA)
	add("nowhere.svc.cluster.local", mdns.TypeA)
	add("nothing.default.svc.cluster.local", mdns.TypeA, mdns.TypeSRV)
	add("web.nowhere.svc.cluster.local", mdns.TypeA)
	add("x.cluster.local", mdns.TypeA)
	add("1-2-3.default.pod.cluster.local", mdns.TypeA)
	add("1-2-3-4.default.pod.cluster.local", mdns.TypeA)
	add("*.default.svc.cluster.local", mdns.TypeA)
	add("web.*.svc.cluster.local", mdns.TypeA)
	add("any.web.default.svc.cluster.local", mdns.TypeA)
	add("99.0.244.10.in-addr.arpa", mdns.TypePTR)
	add("99.0.96.10.in-addr.arpa", mdns.TypePTR)
	add("0.96.10.in-addr.arpa", mdns.TypePTR)
	add("example.test", mdns.TypeA)
	add("nonexistent.test", mdns.TypeA)
	for _, class := range []uint16{mdns.ClassCHAOS, mdns.ClassHESIOD, mdns.ClassNONE, mdns.ClassANY} {
		qs = append(qs, dnsQuery{"web.default.svc.cluster.local.", mdns.TypeA, class})
	}
	return qs
}

// normalize renders a reply as comparable lines: the rcode, then each section's
// records (TTLs kept, the SOA's serial zeroed, the OPT record left out), sorted.
func normalize(m *mdns.Msg) string {
	out := []string{mdns.RcodeToString[m.Rcode]}
	if m.Authoritative {
		out[0] += " aa"
	}
	for _, sec := range []struct {
		tag string
		rrs []mdns.RR
	}{{"an", m.Answer}, {"ns", m.Ns}, {"ex", m.Extra}} {
		var lines []string
		for _, rr := range sec.rrs {
			if soa, ok := rr.(*mdns.SOA); ok {
				c := *soa
				c.Serial = 0
				rr = &c
			}
			if rr.Header().Rrtype == mdns.TypeOPT {
				continue
			}
			lines = append(lines, sec.tag+" "+strings.Join(strings.Fields(rr.String()), " "))
		}
		slices.Sort(lines)
		out = append(out, lines...)
	}
	return strings.Join(out, "\n")
}

// TestDNSMatchesCoreDNS asks minicluster's cluster DNS and CoreDNS 1.15 (its kubernetes
// plugin on minicluster's API, as kubeadm configures it, both forwarding to the same
// fake upstream) the same questions, generated from the cluster's objects, and requires
// the same answers except for the differences listed, each with its reason.
func TestDNSMatchesCoreDNS(t *testing.T) {
	n := newNode(t)
	n.fakeUpstream(t)
	n.start("--dns-upstream", "127.0.0.77")
	const coredns = "127.0.0.53:1053"
	n.startCoreDNS(t, coredns, "127.0.0.77:53")
	manifest := filepath.Join(t.TempDir(), "fixtures.yaml")
	os.WriteFile(manifest, []byte(dnsFixtures), 0o644)
	kubectl := n.kubectlFor(t)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=60s")
	kubectl("wait", "--for=condition=Available", "deployment/web", "--timeout=60s")

	exchange := func(server string, q dnsQuery) (*mdns.Msg, error) {
		req := new(mdns.Msg)
		req.SetQuestion(q.name, q.qtype)
		req.Question[0].Qclass = q.class
		req.SetEdns0(4096, false)
		var r *mdns.Msg
		var err error
		n.inNetns(t, func() { r, _, err = (&mdns.Client{Timeout: 2 * time.Second}).Exchange(req, server) })
		return r, err
	}
	// Both have synced once the last fixture resolves in both.
	eventually(t, 30*time.Second, func() error {
		for _, server := range []string{"10.244.0.1:53", coredns} {
			r, err := exchange(server, dnsQuery{"db-1.db.default.svc.cluster.local.", mdns.TypeA, mdns.ClassINET})
			if err != nil || len(r.Answer) != 1 {
				return fmt.Errorf("%s: %v %v", server, r, err)
			}
		}
		return nil
	})
	differences := []*dnsDifference{
		{what: "A at a _port._proto name", ours: "NOERROR aa\nns cluster.local. 5 IN SOA",
			match:  func(q dnsQuery) bool { return strings.HasPrefix(q.name, "_") && q.qtype == mdns.TypeA },
			reason: "the spec (2.4.1, 2.4.2) puts only SRV records at _port._proto names: NODATA; CoreDNS gives the service's addresses"},
		{what: "other types at a reverse name", ours: "NOERROR aa\nns ",
			match:  func(q dnsQuery) bool { return strings.HasSuffix(q.name, ".in-addr.arpa.") && q.qtype != mdns.TypePTR },
			reason: "the name exists (it has a PTR record): NODATA with the reverse zone's SOA (RFC 2308); CoreDNS falls through to the upstream, which knows nothing of it"},
		{what: "PTR of an unused address of the cluster's networks", ours: "NXDOMAIN aa\nns ",
			match: func(q dnsQuery) bool {
				return strings.HasPrefix(q.name, "99.0.") && q.qtype == mdns.TypePTR
			},
			reason: "the cluster's networks are the cluster DNS's to answer: authoritative NXDOMAIN with the reverse zone's SOA; CoreDNS (kubeadm's fallthrough) asks the upstream"},
		{what: "the zone's name server", ours: "NOERROR aa\nan ",
			match: func(q dnsQuery) bool {
				return q.name == "cluster.local." && q.qtype == mdns.TypeNS || q.name == "ns.dns.cluster.local." && q.qtype == mdns.TypeA
			},
			reason: "CoreDNS names its own pod addresses behind kube-dns, and run outside a pod has none (NODATA); minicluster answers ns.dns.cluster.local with the kube-dns service's address, as glue too"},
		{what: "TXT at the zone's apex", ours: "NOERROR aa\nns cluster.local.",
			match:  func(q dnsQuery) bool { return q.name == "cluster.local." && q.qtype == mdns.TypeTXT },
			reason: "the apex exists (SOA, NS): NODATA (RFC 8020); CoreDNS says NXDOMAIN"},
		{what: "ExternalName services for types other than the target's addresses, and chains that end without data or loop", ours: "",
			match: func(q dnsQuery) bool {
				for _, svc := range []string{"ext.", "outside.", "ext-empty.", "loop-a.", "loop-b.", "self."} {
					if strings.HasPrefix(q.name, svc) && q.class == mdns.ClassINET {
						return true
					}
				}
				return false
			},
			reason: "a CNAME answers every type (RFC 1034 3.6.2, RFC 2181 10.1), the chain's end gives the rcode (RFC 6604: NXDOMAIN with the CNAME and the SOA), a loop is an error (RFC 1034 3.6.2: SERVFAIL, each CNAME once); CoreDNS answers NODATA without the CNAME"},
		{what: "classes other than IN", ours: "REFUSED",
			match:  func(q dnsQuery) bool { return q.class != mdns.ClassINET && q.class != mdns.ClassANY },
			reason: "the cluster's records are IN records; CoreDNS gives them to any class"},
		{what: "names below a pod's", ours: "NXDOMAIN aa",
			match: func(q dnsQuery) bool {
				return strings.HasPrefix(q.name, "x.") && strings.HasSuffix(q.name, ".pod.cluster.local.")
			},
			reason: "the spec defines <a-b-c-d>.<ns>.pod.<zone> only; CoreDNS ignores labels to its left and answers the pod's address"},
	}
	queries := dnsQueries(t, n)
	differ := 0
	for _, q := range queries {
		ours, err := exchange("10.244.0.1:53", q)
		if err != nil {
			t.Errorf("%s: minicluster: %v", q, err)
			continue
		}
		theirs, err := exchange(coredns, q)
		if err != nil {
			t.Errorf("%s: CoreDNS: %v", q, err)
			continue
		}
		a, b := normalize(ours), normalize(theirs)
		var d *dnsDifference
		for _, c := range differences {
			if c.match(q) {
				d = c
				break
			}
		}
		show := func() string {
			return fmt.Sprintf("%s:\n  minicluster: %s\n  CoreDNS:     %s", q, strings.ReplaceAll(a, "\n", "\n               "), strings.ReplaceAll(b, "\n", "\n               "))
		}
		switch {
		case a == b:
		case d == nil:
			t.Errorf("an unlisted difference, %s", show())
		case !strings.HasPrefix(a, d.ours):
			t.Errorf("listed as %q (minicluster: %q…), %s", d.what, d.ours, show())
		default:
			d.seen++
			differ++
		}
	}
	for _, d := range differences {
		if d.seen == 0 { // fixed on one side or the other: the list must say so
			t.Errorf("the difference %q is listed but no query showed it", d.what)
		}
	}
	t.Logf("%d queries, %d answered differently, each for a listed reason", len(queries), differ)
}

// dnsDifference is a deliberate difference from CoreDNS: the queries it covers, what
// minicluster's answer starts with (empty: any), and why.
type dnsDifference struct {
	what   string
	match  func(dnsQuery) bool
	ours   string
	reason string
	seen   int
}
