package node

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

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

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, w := range want {
		if got := backoff(int32(i)); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i, got, w)
		}
	}
	if backoff(100) != backoffMax {
		t.Error("no cap for large restart counts")
	}
}

func TestPodHostsAndEnv(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "team", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{Hostname: "db-0", Subdomain: "db", NodeName: "n1",
			HostAliases: []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}}}}}
	hosts := podHosts(pod, netip.MustParseAddr("10.244.0.7"), "cluster.local")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.244.0.7\tdb-0.db.team.svc.cluster.local\tdb-0\n", "10.1.2.3\tfoo.local\tbar.local\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	for path, want := range map[string]string{"metadata.name": "db-0", "metadata.namespace": "team", "spec.nodeName": "n1",
		"status.podIP": "10.244.0.7", "status.hostIP": "192.0.2.1", "metadata.labels['app']": "db"} {
		if got, err := fieldValue(pod, path, "192.0.2.1", netip.MustParseAddr("10.244.0.7")); err != nil || got != want {
			t.Errorf("fieldRef %s = %q (%v), want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(pod, "spec.bogus", "", netip.Addr{}); err == nil {
		t.Error("unsupported fieldRef accepted")
	}
	vars := map[string]string{"A": "x"}
	for in, want := range map[string]string{"$(A)-y": "x-y", "$$(A)": "$(A)", "$(B)": "$(B)", "a$": "a$", "$(": "$("} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
	env := serviceEnv([]*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "my-backend"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.1.2",
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}})
	for k, want := range map[string]string{"MY_BACKEND_SERVICE_HOST": "10.96.1.2", "MY_BACKEND_SERVICE_PORT": "80",
		"MY_BACKEND_SERVICE_PORT_HTTP": "80", "MY_BACKEND_PORT": "tcp://10.96.1.2:80", "MY_BACKEND_PORT_80_TCP_ADDR": "10.96.1.2"} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

func TestProbeThresholds(t *testing.T) {
	c := &counter{probe: &corev1.Probe{SuccessThreshold: 2, FailureThreshold: 3}}
	steps := []struct {
		ok, verdict, changed bool
	}{
		{true, false, false}, {true, true, true}, {true, true, false}, // two successes make it pass
		{false, true, false}, {false, true, false}, {false, false, true}, // three failures make it fail
		{true, false, false}, {true, true, true},
	}
	for i, s := range steps {
		v, ch := c.observe(s.ok)
		if v != s.verdict || ch != s.changed {
			t.Errorf("step %d (ok=%v): verdict %v changed %v, want %v %v", i, s.ok, v, ch, s.verdict, s.changed)
		}
	}
}

// The kubelet expands $(VAR) from the container's environment in command and args.
func TestExpandCommand(t *testing.T) {
	ctr := &corev1.Container{Command: []string{"sh", "-c", `echo "A=$$(echo hi) B=$(MYVAR)"`}, Args: []string{"$(MISSING)", "$(MYVAR)"}}
	got := expandCommand(ctr, []string{"PATH=/bin", "MYVAR=expanded"})
	if want := `echo "A=$(echo hi) B=expanded"`; got.Command[2] != want || got.Args[0] != "$(MISSING)" || got.Args[1] != "expanded" {
		t.Errorf("command %q args %q", got.Command, got.Args)
	}
	if ctr.Command[2] != `echo "A=$$(echo hi) B=$(MYVAR)"` {
		t.Error("the pod's own container changed")
	}
}

// The kubelet's own expansion cases (third_party/forked/golang/expansion/expand_test.go).
func TestExpandAsTheKubelet(t *testing.T) {
	vars := map[string]string{"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
	for _, c := range []struct{ in, want string }{
		{"$(VAR_A)", "A"}, {"$(VAR_A)-$(VAR_A)", "A-A"}, {"$(VAR_A)-1", "A-1"}, {"___$(VAR_B)___", "___B___"},
		{"___$(VAR_C)", "___C"}, {"$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"}, {"$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"},
		{"$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"}, {"f000-$$VAR_A", "f000-$VAR_A"}, {`foo\$(VAR_C)bar`, `foo\Cbar`},
		{`foo\\$(VAR_C)bar`, `foo\\Cbar`}, {`foo\\\\$(VAR_A)bar`, `foo\\\\Abar`},
		{"$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"}, {"$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"}, {"$(VAR_REF)", "$(VAR_A)"},
		{"%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"}, {"foo$(VAR_EMPTY)bar", "foobar"},
		{"foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"}, {"f00__(VAR_A)__", "f00__(VAR_A)__"}, {"$?_boo_$!", "$?_boo_$!"},
		{"$VAR_A", "$VAR_A"}, {"$(VAR_DNE)", "$(VAR_DNE)"}, {"$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"},
		{"$$$$$$(VAR_A)", "$$$(VAR_A)"}, {"$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"}, {"$$$$$$$(VAR_A)", "$$$A"},
		{"$VAR_A)", "$VAR_A)"}, {"${VAR_A}", "${VAR_A}"}, {"$(VAR_B)_______$(A", "B_______$(A"},
		{"$(VAR_C)_______$(", "C_______$("}, {"$(VAR_A)foobarzab$", "Afoobarzab$"}, {`foo-\$(VAR_A`, `foo-\$(VAR_A`},
		{"--$($($($($--", "--$($($($($--"}, {"$($($($($--foo$(", "$($($($($--foo$("}, {"foo0--$($($($(", "foo0--$($($($("},
		{"$(foo$$var)", "$(foo$$var)"}, {"\n", "\n"}, {"$()", "$()"},
	} {
		if got := expand(c.in, vars); got != c.want {
			t.Errorf("expand(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzExpand: no string makes expansion panic, and one without $ comes back as it was.
func FuzzExpand(f *testing.F) {
	for _, seed := range []string{"$(A)", "$$(A)", "$(", "$", "a$(B$(A))", "$()"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := expand(s, map[string]string{"A": "x", "B": "$(A)"})
		if !strings.Contains(s, "$") && got != s {
			t.Errorf("expand(%q) = %q", s, got)
		}
	})
}
