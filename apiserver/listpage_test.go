package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"
)

// Issue 19 (12): limit and continue serve a list in pages, as kube-apiserver does —
// before, limit was ignored and every client got the whole list at once. Every page
// says the first page's revision; client-go's pager reads them all, once each.
func TestListInPages(t *testing.T) {
	s := newTestServerHistory(t, 40)
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: s.url, QPS: 1000, Burst: 1000})
	ctx := context.Background()
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("cm-%02d", i)
		want = append(want, name)
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Items) != 10 || first.Continue == "" {
		t.Fatalf("first page: %d items, continue %q", len(first.Items), first.Continue)
	}
	// A change between pages: the next pages still say the first one's revision.
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "zz"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 10, Continue: first.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if second.ResourceVersion != first.ResourceVersion || len(second.Items) != 10 || second.Items[0].Name != "cm-10" {
		t.Errorf("second page: rv %s (first %s), %d items from %v", second.ResourceVersion, first.ResourceVersion, len(second.Items), second.Items)
	}
	var got []string
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return cs.CoreV1().ConfigMaps("default").List(ctx, opts)
	})
	p.PageSize = 7
	if err := p.EachListItem(ctx, metav1.ListOptions{}, func(o runtime.Object) error {
		got = append(got, o.(*corev1.ConfigMap).Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "zz")
	if !slices.Equal(got, want) {
		t.Errorf("the pager read %v", got)
	}

	q := func(params string) response {
		return s.do(t, http.MethodGet, "/api/v1/namespaces/default/configmaps?"+params, "", "")
	}
	for params, code := range map[string]int{
		"continue=bogus":             400,
		"limit=x":                    400,
		"resourceVersionMatch=Exact": 422, // without a resourceVersion
		"resourceVersion=0&resourceVersionMatch=Exact":                              422,
		"resourceVersion=1&resourceVersionMatch=Sometimes":                          422,
		"resourceVersion=1&resourceVersionMatch=Exact":                              410, // only the present is kept
		"resourceVersion=1&resourceVersionMatch=NotOlderThan":                       200,
		"continue=" + url.QueryEscape(first.Continue) + "&resourceVersion=5":        400,
		"resourceVersion=" + second.ResourceVersion + "&resourceVersionMatch=Exact": 410,
	} {
		if r := q(params); r.code != code {
			t.Errorf("%s: %d, want %d: %s", params, r.code, code, r.body)
		}
	}
	// A continue token older than the kept history (40 events) is expired, as a
	// compacted one is in Kubernetes; the pager then lists in one go.
	for i := range 45 {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("x%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if r := q("limit=10&continue=" + url.QueryEscape(first.Continue)); r.code != 410 || r.status().Reason != metav1.StatusReasonExpired {
		t.Errorf("an expired continue token: %d %s", r.code, r.body)
	}
}

// Issue 19 (12): requests in flight are bounded as kube-apiserver bounds them (429 with
// Retry-After past the limit, reads and writes apart), and lists wait for one of a few
// list slots — each holds its whole answer in memory. The slots are taken here by hand,
// as that many slow lists would.
func TestInFlightLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxRequestsInFlight, c.MaxMutatingRequestsInFlight = 3, 2 })
	f := s.handler.inFlight
	f.listWait = 200 * time.Millisecond
	const cms = "/api/v1/namespaces/default/configmaps"
	create := func(name string) response {
		return s.do(t, http.MethodPost, cms, jsonCT, `{"metadata":{"name":"`+name+`"}}`)
	}
	if r := create("a"); r.code != 201 {
		t.Fatal(r.code, string(r.body))
	}
	for range cap(f.lists) {
		f.lists <- struct{}{}
	}
	start := time.Now()
	if r := s.do(t, http.MethodGet, cms, "", ""); r.code != 429 || r.header.Get("Retry-After") != "1" || time.Since(start) < f.listWait {
		t.Errorf("a list with every list slot taken: %d after %s, Retry-After %q", r.code, time.Since(start), r.header.Get("Retry-After"))
	}
	if r := s.do(t, http.MethodGet, cms+"/a", "", ""); r.code != 200 {
		t.Errorf("a get meanwhile: %d", r.code)
	}
	go func() { time.Sleep(50 * time.Millisecond); <-f.lists }() // a list ends: the waiting one goes on
	if r := s.do(t, http.MethodGet, cms, "", ""); r.code != 200 {
		t.Errorf("a list that waited for a slot: %d", r.code)
	}
	for range cap(f.lists) - 1 {
		<-f.lists
	}
	for range cap(f.reads) {
		f.reads <- struct{}{}
	}
	if r := s.do(t, http.MethodGet, cms+"/a", "", ""); r.code != 429 || r.status().Reason != metav1.StatusReasonTooManyRequests {
		t.Errorf("a read past the limit: %d %s", r.code, r.body)
	}
	if r := create("b"); r.code != 201 {
		t.Errorf("a write while reads are at their limit: %d", r.code)
	}
	for range cap(f.writes) {
		f.writes <- struct{}{}
	}
	if r := create("c"); r.code != 429 {
		t.Errorf("a write past the limit: %d", r.code)
	}
	if r := s.do(t, http.MethodGet, cms+"?watch=true&timeoutSeconds=1", "", ""); r.code != 200 {
		t.Errorf("a watch is long-running, not counted: %d", r.code)
	}
}
