//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// client-go reads KUBE_FEATURE_* once per process, so each setting runs in a child.
func TestClientGoInformers(t *testing.T) {
	if os.Getenv("MC_INFORMERS_CHILD") != "" {
		informerScenario(t)
		return
	}
	for _, watchList := range []string{"true", "false"} {
		t.Run("WatchListClient="+watchList, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestClientGoInformers$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "MC_INFORMERS_CHILD=1", "KUBE_FEATURE_WatchListClient="+watchList)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
}

func informerScenario(t *testing.T) {
	n := newNode(t)
	n.start()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(n.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = n.dialInNetns
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events := make(chan string, 1000)
	factory := informers.NewSharedInformerFactory(cs, 0)
	watch := func(kind string, inf cache.SharedIndexInformer) cache.SharedIndexInformer {
		key := func(o any) string {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				return d.Key
			}
			m, _ := o.(metav1.Object)
			return m.GetNamespace() + "/" + m.GetName()
		}
		inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { events <- kind + " ADD " + key(o) },
			UpdateFunc: func(_, o any) { events <- kind + " UPDATE " + key(o) },
			DeleteFunc: func(o any) { events <- kind + " DELETE " + key(o) },
		})
		return inf
	}
	svcs := watch("services", factory.Core().V1().Services().Informer())
	watch("pods", factory.Core().V1().Pods().Informer())
	watch("endpointslices", factory.Discovery().V1().EndpointSlices().Informer())
	watch("namespaces", factory.Core().V1().Namespaces().Informer())
	factory.Start(ctx.Done())
	defer func() {
		cancel() // informers stop on ctx; Shutdown waits for them
		factory.Shutdown()
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, 20*time.Second)
	defer syncCancel()
	for typ, ok := range factory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	seen := map[string]bool{} // events of all informers interleave: remember every one
	expect := func(want string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for !seen[want] {
			select {
			case ev := <-events:
				seen[ev] = true
			case <-deadline:
				t.Fatalf("no %q within %s", want, timeout)
			}
		}
	}
	expect("services ADD default/kubernetes", 5*time.Second)
	expect("namespaces ADD /kube-system", 5*time.Second)

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s1"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	created, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect("services ADD default/s1", 5*time.Second)
	created.Labels = map[string]string{"x": "y"}
	if _, err := cs.CoreV1().Services("default").Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("services UPDATE default/s1", 5*time.Second)
	if err := cs.CoreV1().Services("default").Delete(ctx, "s1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("services DELETE default/s1", 5*time.Second)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("pods ADD default/p", 5*time.Second)
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "manual"}, AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}}}, Ports: []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}}}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("endpointslices ADD default/manual", 5*time.Second)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("namespaces ADD /team", 5*time.Second)

	// A restart loses the watch history: informers must relist and carry on.
	n.stop(syscall.SIGKILL)
	n.start()
	if _, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "after"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 81}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("services ADD default/after", 60*time.Second)
	if _, exists, _ := svcs.GetStore().GetByKey("default/after"); !exists {
		t.Error("lister lacks the service created after the restart")
	}
	if _, exists, _ := svcs.GetStore().GetByKey("default/s1"); exists {
		t.Error("lister still holds a deleted service")
	}
	fmt.Println("informers synced, followed changes and recovered after a restart")
}
