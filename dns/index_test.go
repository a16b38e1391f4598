package dns

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/minicluster/minicluster/index"
)

// The index answers from the informers' caches and keeps its reverse records in step
// with the changes they deliver (here filled by hand, as a running informer would).
func TestIndexFollowsInformers(t *testing.T) {
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	svcs, sliceInf := f.Core().V1().Services(), f.Discovery().V1().EndpointSlices()
	x, err := NewIndex(svcs, sliceInf, f.Core().V1().Namespaces())
	if err != nil {
		t.Fatal(err)
	}
	set := func(inf cache.SharedIndexInformer, obj metav1.Object) {
		t.Helper()
		if err := inf.GetIndexer().Update(obj); err != nil {
			t.Fatal(err)
		}
		index.OnService(x.refresh).OnAdd(obj, false)
	}
	f.Core().V1().Namespaces().Informer().GetIndexer().Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	set(svcs.Informer(), service("default", "web", "10.96.0.40"))
	set(sliceInf.Informer(), epSlice("default", "web", nil, ep("10.244.0.2", true, ""), ep("10.244.0.3", false, "")))
	check := func(ip string, want ...string) {
		t.Helper()
		got := x.PTR(netip.MustParseAddr(ip))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("PTR %s = %v, want %v", ip, got, want)
		}
	}
	check("10.96.0.40", "web.default.svc")
	check("10.244.0.2", "10-244-0-2.web.default.svc")
	check("10.244.0.3") // not ready
	if s := x.Service("default", "web"); s == nil || s.Spec.ClusterIP != "10.96.0.40" {
		t.Errorf("Service: %v", s)
	}
	if !x.Namespace("default") || x.Namespace("nope") {
		t.Error("Namespace answers wrong")
	}
	gone := service("default", "web", "10.96.0.40")
	if err := svcs.Informer().GetIndexer().Delete(gone); err != nil {
		t.Fatal(err)
	}
	index.OnService(x.refresh).OnDelete(gone)
	check("10.96.0.40")
	check("10.244.0.2")
	if x.Synced() {
		t.Error("synced before Run saw the informers synced")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x.Run(ctx) // informers never started: returns at once, not synced
	if x.Synced() {
		t.Error("synced without informers")
	}
}
