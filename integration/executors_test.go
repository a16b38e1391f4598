//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	corev1 "k8s.io/api/core/v1"
)

// client-go's SPDY and WebSocket executors (the e2e framework's and kubectl's) run a
// command in a container with the container's environment and working directory.
func TestExecExecutors(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "app", "--image=busybox", "--env=FOO=from-the-pod-spec", "--overrides",
		`{"spec":{"containers":[{"name":"app","image":"busybox","command":["sleep","3600"],"workingDir":"/srv/app","env":[{"name":"FOO","value":"from-the-pod-spec"}]}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/app", "--timeout=60s")
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(n.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = n.dialInNetns
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("app").SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "app", Command: []string{"sh", "-c", `echo $FOO; pwd; echo oops >&2`},
			Stdout: true, Stderr: true}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		t.Fatal(err)
	}
	for name, ex := range map[string]remotecommand.Executor{"SPDY": spdy, "WebSocket": ws} {
		var stdout, stderr strings.Builder
		// The executors dial on their own: from a thread inside the node's netns.
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if err := setNetns(n.netns); err != nil {
				done <- err
				return
			}
			done <- ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
		}()
		if err := <-done; err != nil || stdout.String() != "from-the-pod-spec\n/srv/app\n" || stderr.String() != "oops\n" {
			t.Errorf("%s: stdout %q, stderr %q, err %v", name, stdout.String(), stderr.String(), err)
		}
	}
}

// securityContext's runAsUser and runAsGroup: the container and what kubectl exec runs
// in it run as that user; runAsNonRoot without a user is refused as the kubelet does.
func TestRunAsUser(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "user", "--image=busybox", "--overrides",
		`{"spec":{"securityContext":{"runAsUser":1000,"runAsGroup":3000,"supplementalGroups":[4000]},`+
			`"containers":[{"name":"user","image":"busybox","command":["sh","-c","id; touch /tmp/mine; sleep 3600"]}]}}`)
	kubectl("run", "nonroot", "--image=busybox", "--overrides",
		`{"spec":{"containers":[{"name":"nonroot","image":"busybox","command":["sleep","3600"],"securityContext":{"runAsNonRoot":true}}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/user", "--timeout=60s")
	if out := kubectl("logs", "user"); !strings.Contains(out, "uid=1000") || !strings.Contains(out, "gid=3000") || !strings.Contains(out, "4000") {
		t.Errorf("id in the container: %q", out)
	}
	if out := kubectl("exec", "user", "--", "id", "-u"); out != "1000\n" {
		t.Errorf("id -u through exec: %q", out)
	}
	eventually(t, 30*time.Second, func() error {
		got := kubectl("get", "pod", "nonroot", "-o", `jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}`)
		if !strings.HasPrefix(got, "CreateContainerConfigError: ") || !strings.Contains(got, "container has runAsNonRoot and image will run as root") {
			return fmt.Errorf("nonroot: %s", got)
		}
		return nil
	})
}
