//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const volumesManifest = `
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {greeting: hello, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: vols, labels: {app: vols, tier: web}}
spec:
  containers:
  - name: writer
    image: busybox:1.36
    command: [sh, -c, 'echo from-writer > /shared/note; echo root-write > /rootfile; sleep 3600']
    workingDir: /work/dir
    env: [{name: FOO, value: bar}]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: config, mountPath: /etc/config}
    - {name: secret, mountPath: /etc/secret, readOnly: true}
    - {name: info, mountPath: /etc/podinfo}
    - {name: scratch, mountPath: /scratch}
  - name: reader
    image: busybox:1.36
    command: [sh, -c, 'sleep 3600']
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}
    envFrom:
    - secretRef: {name: app-secret}
      prefix: SECRET_
    volumeMounts:
    - {name: shared, mountPath: /data}
    - {name: config, mountPath: /greeting.txt, subPath: greeting}
    - {name: shared, mountPath: /sub, subPath: a/b}
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: config, configMap: {name: app-config}}
  - {name: secret, secret: {secretName: app-secret, defaultMode: 0400}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
`

// A pod's volumes, as the kubelet makes them: an emptyDir shared by two containers (and
// a size-limited one in memory), ConfigMap and Secret volumes that follow their object,
// read-only mounts, subPaths, a downward API volume, env from ConfigMaps and Secrets,
// and every container with a root of its own: what it writes stays out of the host.
func TestPodVolumes(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	manifest := filepath.Join(t.TempDir(), "vols.yaml")
	os.WriteFile(manifest, []byte(volumesManifest), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod/vols", "--timeout=60s")
	in := func(ctr, script string) (string, error) {
		out, errOut, err := n.exec("kubectl", "exec", "vols", "-c", ctr, "--", "sh", "-c", script)
		if err != nil {
			return out, fmt.Errorf("%s: %v: %s", script, err, errOut)
		}
		return out, nil
	}
	for _, c := range []struct{ ctr, script, want string }{
		{"reader", "cat /data/note", "from-writer\n"},
		{"reader", "cat /greeting.txt", "hello"},
		{"reader", `echo "$GREETING $SECRET_password"`, "hello hunter2\n"},
		{"writer", "cat /etc/config/mode /etc/secret/password", "fasthunter2"},
		{"writer", "stat -c %a /etc/secret/..data/password", "400\n"},
		{"writer", "cat /etc/podinfo/labels", "app=\"vols\"\ntier=\"web\""},
		{"writer", "cat /etc/podinfo/name", "vols"},
		{"writer", "cat /rootfile; echo $FOO; pwd", "root-write\nbar\n/work/dir\n"},
		{"reader", "test -e /rootfile || echo none", "none\n"},
		{"writer", "(echo x > /etc/secret/new) 2>&1 | grep -o 'Read-only file system'", "Read-only file system\n"},
		{"writer", "df -k /scratch | tail -1 | awk '{print $2}'", "1024\n"},
		{"writer", "mkdir -p /shared/a/b && echo deep > /shared/a/b/f && echo ok", "ok\n"},
		{"reader", "cat /sub/f 2>&1 || ls /sub", "deep\n"},
	} {
		got, err := in(c.ctr, c.script)
		if err != nil || got != c.want {
			t.Errorf("%s: %q: got %q, want %q (%v)", c.ctr, c.script, got, c.want, err)
		}
	}
	if _, err := os.Stat("/rootfile"); err == nil {
		os.Remove("/rootfile")
		t.Errorf("a container's write to its / reached the host's /")
	}
	// ConfigMap and Secret changes reach the files, through a new ..data.
	kubectl("patch", "configmap", "app-config", "-p", `{"data":{"greeting":"updated"}}`)
	kubectl("patch", "secret", "app-secret", "-p", `{"stringData":{"password":"rotated"}}`)
	eventually(t, 30*time.Second, func() error {
		got, err := in("writer", "cat /etc/config/greeting /etc/secret/password")
		if err != nil || got != "updatedrotated" {
			return fmt.Errorf("after the updates the files hold %q (%v)", got, err)
		}
		return nil
	})
	// A subPath mount is a snapshot, as in Kubernetes: it does not follow.
	if got, _ := in("reader", "cat /greeting.txt"); got != "hello" {
		t.Errorf("subPath file after the update: %q", got)
	}
	// A daemon restart changes nothing: the same containers, with their volumes.
	if _, err := in("writer", "echo kept > /scratch/x && echo kept > /shared/y"); err != nil {
		t.Fatal(err)
	}
	started := kubectl("get", "pod", "vols", "-o", "jsonpath={.status.containerStatuses[*].state.running.startedAt}")
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.start()
	kubectl("wait", "--for=condition=Ready", "pod/vols", "--timeout=60s")
	if got, err := in("reader", "cat /data/y"); err != nil || got != "kept\n" {
		t.Errorf("the emptyDir after a restart: %q %v", got, err)
	}
	if got, err := in("writer", "cat /scratch/x"); err != nil || got != "kept\n" {
		t.Errorf("the memory emptyDir after a restart: %q %v", got, err)
	}
	if now := kubectl("get", "pod", "vols", "-o", "jsonpath={.status.containerStatuses[*].state.running.startedAt}"); now != started {
		t.Errorf("containers restarted with the daemon: %s, then %s", started, now)
	}
	// The pod's volumes go with it, memory-backed one included.
	uid := kubectl("get", "pod", "vols", "-o", "jsonpath={.metadata.uid}")
	kubectl("delete", "pod", "vols", "--grace-period=1")
	if _, err := os.Stat(filepath.Join(n.dataDir, "pods", uid)); err == nil {
		t.Errorf("the pod's directory outlived it")
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), uid) {
		t.Errorf("a mount of the deleted pod is left:\n%s", mounts)
	}
}

// A volume naming a missing ConfigMap keeps the pod waiting with the kubelet's event,
// until the ConfigMap exists; an optional one does not.
func TestMissingVolumeSource(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "waits", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"containers":[{"name":"waits","image":"busybox","command":["sleep","3600"],"volumeMounts":[{"name":"c","mountPath":"/c"}]}],`+
			`"volumes":[{"name":"c","configMap":{"name":"later"}}]}}`)
	kubectl("run", "optional", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"containers":[{"name":"optional","image":"busybox","command":["sleep","3600"],"volumeMounts":[{"name":"c","mountPath":"/c"}]}],`+
			`"volumes":[{"name":"c","configMap":{"name":"never","optional":true}}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/optional", "--timeout=60s")
	eventually(t, 20*time.Second, func() error {
		out := kubectl("get", "events", "--field-selector", "involvedObject.name=waits")
		if !strings.Contains(out, "FailedMount") || !strings.Contains(out, `MountVolume.SetUp failed for volume "c" : configmap "later" not found`) {
			return fmt.Errorf("no FailedMount event:\n%s", out)
		}
		return nil
	})
	if got := kubectl("get", "pod", "waits", "-o", "jsonpath={.status.phase}/{.status.containerStatuses[0].state.waiting.reason}"); got != "Pending/ContainerCreating" {
		t.Errorf("a pod waiting for its volume: %s", got)
	}
	kubectl("create", "configmap", "later", "--from-literal=k=v")
	kubectl("wait", "--for=condition=Ready", "pod/waits", "--timeout=30s")
	if out, _, err := n.exec("kubectl", "exec", "waits", "--", "cat", "/c/k"); err != nil || out != "v" {
		t.Errorf("the volume once the configmap exists: %q %v", out, err)
	}
	// Paths that would leave the volume are refused by the API.
	for _, bad := range []string{
		`{"name":"c","configMap":{"name":"x","items":[{"key":"k","path":"../escape"}]}}`,
		`{"name":"c","configMap":{"name":"x","items":[{"key":"k","path":"/abs"}]}}`,
	} {
		_, errOut, err := n.exec("kubectl", "run", "bad", "--image=busybox", "--restart=Never", "--overrides",
			`{"spec":{"volumes":[`+bad+`]}}`)
		if err == nil || !strings.Contains(errOut, "spec.volumes[0].configMap.items[0].path") {
			t.Errorf("%s: %v %s", bad, err, errOut)
		}
	}
	_, errOut, err := n.exec("kubectl", "run", "bad", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"containers":[{"name":"bad","image":"busybox","volumeMounts":[{"name":"v","mountPath":"/v","subPath":"../../etc"}]}],"volumes":[{"name":"v","emptyDir":{}}]}}`)
	if err == nil || !strings.Contains(errOut, "spec.containers[0].volumeMounts[0].subPath") {
		t.Errorf("a subPath climbing out: %v %s", err, errOut)
	}
}

// A symlink planted in a volume cannot take a subPath mount out of it: the container
// does not start, with the kubelet's CreateContainerConfigError.
func TestSubPathSymlinkStaysInVolume(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	manifest := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(manifest, []byte(`
apiVersion: v1
kind: Pod
metadata: {name: planter}
spec:
  initContainers:
  - name: plant
    image: busybox
    command: [sh, -c, 'ln -s /etc /v/abs && ln -s ../../../../../../etc /v/rel && mkdir /v/in && ln -s in /v/ok']
    volumeMounts: [{name: v, mountPath: /v}]
  containers:
  - {name: abs, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: v, mountPath: /x, subPath: abs}]}
  - {name: rel, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: v, mountPath: /x, subPath: rel}]}
  - {name: ok, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: v, mountPath: /x, subPath: ok}]}
  volumes: [{name: v, emptyDir: {}}]
`), 0o644)
	kubectl("apply", "-f", manifest)
	eventually(t, 60*time.Second, func() error {
		got := kubectl("get", "pod", "planter", "-o",
			`jsonpath={range .status.containerStatuses[*]}{.name}={.state.waiting.reason}{.state.running.startedAt}{" "}{end}`)
		for _, name := range []string{"abs", "rel"} {
			if !strings.Contains(got, name+"=CreateContainerConfigError") {
				return fmt.Errorf("container %s: %s", name, got)
			}
		}
		if strings.Contains(got, "ok=CreateContainerConfigError") || strings.Contains(got, "ok= ") {
			return fmt.Errorf("a symlink inside the volume is refused or not started: %s", got)
		}
		return nil
	})
	if msg := kubectl("get", "pod", "planter", "-o", `jsonpath={.status.containerStatuses[0].state.waiting.message}`); !strings.Contains(msg, "resolves outside the volume") {
		t.Errorf("message %q", msg)
	}
}

// A pod reaches the API through the kubernetes service with the token it is given:
// kubectl inside the pod, with nothing but what the pod has, lists what its Role allows
// and is refused the rest.
func TestInClusterAPIAccess(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "client", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
	kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
	inPod := func(args ...string) (string, string, error) {
		// Only the pod's environment and files: no kubeconfig, KUBERNETES_SERVICE_HOST.
		return n.exec("kubectl", append([]string{"exec", "client", "--", "kubectl"}, args...)...)
	}
	_, errOut, err := inPod("get", "pods")
	if err == nil || !strings.Contains(errOut, `User "system:serviceaccount:default:default" cannot list resource "pods"`) {
		t.Fatalf("before any Role: %v %s", err, errOut)
	}
	kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods")
	kubectl("create", "rolebinding", "reader", "--role=pod-reader", "--serviceaccount=default:default")
	eventually(t, 10*time.Second, func() error {
		out, errOut, err := inPod("get", "pods")
		if err != nil || !hasRow(out, "client", "1/1", "Running") {
			return fmt.Errorf("in-pod kubectl get pods: %v %s%s", err, out, errOut)
		}
		return nil
	})
	if _, errOut, err := inPod("get", "secrets"); err == nil || !strings.Contains(errOut, "cannot list resource \"secrets\"") {
		t.Errorf("in-pod kubectl get secrets: %v %s", err, errOut)
	}
	if out, _, _ := n.exec("kubectl", "exec", "client", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); out != "default" {
		t.Errorf("namespace file %q", out)
	}
	// A token bound to the pod dies with it.
	token, _, _ := n.exec("kubectl", "exec", "client", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
	kubectl("delete", "pod", "client", "--grace-period=1")
	_, errOut, err = n.exec("kubectl", "--token", token, "get", "pods")
	if err == nil || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("the deleted pod's token still works: %v %s", err, errOut)
	}
	// automountServiceAccountToken: false leaves the pod without one.
	kubectl("run", "none", "--image=busybox", "--restart=Never", "--overrides", `{"spec":{"automountServiceAccountToken":false}}`, "--", "sleep", "3600")
	if got := kubectl("get", "pod", "none", "-o", "jsonpath={.spec.volumes}"); got != "" {
		t.Errorf("volumes of a pod without automount: %s", got)
	}
}

// kubectl debug adds an ephemeral container to a running pod: it runs once, in the
// pod's network and volumes, its output in its log, interactively too; it may not be
// changed or removed afterwards.
func TestKubectlDebug(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "app", "--image=busybox", "--", "sleep", "3600")
	kubectl("wait", "--for=condition=Ready", "pod/app", "--timeout=60s")
	ip := kubectl("get", "pod", "app", "-o", "jsonpath={.status.podIP}")
	kubectl("debug", "app", "--image=busybox", "--target=app", "--container=dbg", "--", "sh", "-c", "echo hello; hostname -i")
	eventually(t, 20*time.Second, func() error {
		out, errOut, err := n.exec("kubectl", "logs", "app", "-c", "dbg")
		if err != nil || out != "hello\n"+ip+"\n" {
			return fmt.Errorf("debug container log %q (%v %s), want hello and %s", out, err, errOut, ip)
		}
		return nil
	})
	cmd := exec.Command("ip", "netns", "exec", n.netns, "kubectl", "debug", "app", "-i", "--image=busybox", "--container=dbg2", "--", "sh")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dataDir, "kubeconfig"))
	cmd.Stdin = strings.NewReader("echo interactive-$((6*7))\nexit\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "interactive-42") {
		t.Errorf("kubectl debug -i: %v\n%s", err, out)
	}
	if got := kubectl("get", "pod", "app", "-o", "jsonpath={.status.ephemeralContainerStatuses[*].state.terminated.reason}"); got != "Completed Completed" {
		t.Errorf("ephemeral container states %q", got)
	}
	_, errOut, err := n.exec("kubectl", "patch", "pod", "app", "--subresource=ephemeralcontainers", "--type=json",
		"-p", `[{"op":"remove","path":"/spec/ephemeralContainers/0"}]`)
	if err == nil || !strings.Contains(errOut, `existing ephemeral containers "dbg" may not be removed`) {
		t.Errorf("removing an ephemeral container: %v %s", err, errOut)
	}
}

// A container that mounts a file of its own at /etc/hosts gets it untouched: the pod's
// hosts file is not written into it (it was, into a hostPath of the node's /etc/hosts,
// as the e2e suite's "kubelet managed /etc/hosts" spec mounts it), as the kubelet does.
func TestOwnEtcHostsIsNotManaged(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	const mine = "127.0.0.1 localhost mine\n"
	if err := os.WriteFile(hosts, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl("run", "own", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"containers":[{"name":"own","image":"busybox","command":["sleep","3600"],"volumeMounts":[`+
			`{"name":"h","mountPath":"/etc/hosts"},{"name":"h","mountPath":"/etc/hosts-original"}]}],`+
			`"volumes":[{"name":"h","hostPath":{"path":"`+hosts+`","type":"File"}}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/own", "--timeout=60s")
	if got, _ := os.ReadFile(hosts); string(got) != mine {
		t.Errorf("the node's file was written: %q", got)
	}
	if out, _, err := n.exec("kubectl", "exec", "own", "--", "cat", "/etc/hosts"); err != nil || out != mine {
		t.Errorf("the container's /etc/hosts: %q %v", out, err)
	}
}
