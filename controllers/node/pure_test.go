package node

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestIPAM(t *testing.T) {
	p := newIPAM(netip.MustParsePrefix("10.244.0.0/29")) // hosts .1-.6, .1 the gateway
	var got []string
	for i := 0; i < 5; i++ {
		ip, err := p.allocate("p")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if want := "[10.244.0.2 10.244.0.3 10.244.0.4 10.244.0.5 10.244.0.6]"; fmtList(got) != want {
		t.Errorf("allocated %v, want %s", got, want)
	}
	if _, err := p.allocate("p"); err != ErrNoAddress {
		t.Errorf("full range: %v", err)
	}
	p.release(netip.MustParseAddr("10.244.0.3"))
	p.release(netip.MustParseAddr("10.244.0.5"))
	if ip, _ := p.allocate("q"); ip.String() != "10.244.0.3" {
		t.Errorf("after wrapping: %s", ip)
	}
	p2 := newIPAM(netip.MustParsePrefix("10.244.0.0/29"))
	p2.reserve(netip.MustParseAddr("10.244.0.2"), "adopted")
	if ip, _ := p2.allocate("x"); ip.String() != "10.244.0.3" {
		t.Errorf("reserved address handed out: %s", ip)
	}
}

func fmtList(l []string) string {
	s := "["
	for i, x := range l {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}

func TestPodResolvConf(t *testing.T) {
	host := parseResolvConf("# generated\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
	dns := netip.MustParseAddr("10.96.0.10")
	pod := func(policy corev1.DNSPolicy, cfg *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team"}, Spec: corev1.PodSpec{DNSPolicy: policy, DNSConfig: cfg}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"ClusterFirst", pod(corev1.DNSClusterFirst, nil),
			"nameserver 10.96.0.10\nsearch team.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"},
		{"Default", pod(corev1.DNSDefault, nil), "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"},
		{"None with dnsConfig", pod(corev1.DNSNone, &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.b"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}}}),
			"nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n"},
		{"ClusterFirst with dnsConfig override", pod(corev1.DNSClusterFirst, &corev1.PodDNSConfig{
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}, {Name: "single-request-reopen"}}}),
			"nameserver 10.96.0.10\nsearch team.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:1 single-request-reopen\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podResolvConf(tt.pod, dns, "cluster.local", host).String(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
