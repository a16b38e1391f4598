//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// registryInNetns serves go-containerregistry's registry on 127.0.0.1 inside the node's
// netns (where the daemon pulls from), asking GETs of private/ for user:pass.
func (n *node) registryInNetns(t testing.TB) string {
	lnc := make(chan net.Listener, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := setNetns(n.netns); err != nil {
			errc <- err
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			errc <- err
			return
		}
		lnc <- ln
	}()
	var ln net.Listener
	select {
	case ln = <-lnc:
	case err := <-errc:
		t.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); strings.HasPrefix(r.URL.Path, "/v2/private/") && r.Method == http.MethodGet && (!ok || u != "user" || p != "pass") {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// busyboxLayer is a layer with the host's busybox, the libraries it links, an applet
// link for sh, and files.
// hostBusyboxFiles are the host's busybox and the libraries it links, by their paths
// (without the leading slash); the test is skipped without busybox.
func hostBusyboxFiles(t testing.TB) map[string][]byte {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on this host")
	}
	files := map[string][]byte{}
	data, _ := os.ReadFile(bb)
	files["bin/busybox"] = data
	out, _ := exec.Command("ldd", bb).Output()
	for _, lib := range regexp.MustCompile(`(/\S+\.so[.\d]*)`).FindAllString(string(out), -1) {
		real, _ := filepath.EvalSymlinks(lib)
		data, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(lib, "/")] = data
	}
	return files
}

func busyboxLayer(t testing.TB, files map[string]string) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte, mode int64) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
		tw.Write(data)
	}
	for name, data := range hostBusyboxFiles(t) {
		add(name, data, 0o755)
	}
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	for _, applet := range []string{"sh", "ls", "cat", "httpd", "touch", "echo", "grep", "sleep"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for name, body := range files {
		add(name, []byte(body), 0o644)
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

func fileLayer(t *testing.T, files map[string]string) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// pushFromNetns pushes img to the registry in the node's netns.
func (n *node) pushFromNetns(t testing.TB, ref string, img v1.Image) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"}),
		remote.WithTransport(&http.Transport{DialContext: n.dialInNetns}))
	if err != nil {
		t.Fatal(err)
	}
}

// Images from a registry: a deployment by tag with a pull secret serves through a
// Service, the kubelet's pull events, a second pod does not pull again, a pod by digest,
// no secret → ErrImagePull then ImagePullBackOff; the container's root is the image's
// (whiteouts applied), and what it writes stays in it.
func TestPulledImages(t *testing.T) {
	n := newNode(t)
	// The registry's port is known once it listens; the daemon starts after.
	reg := n.registryInNetns(t)
	n.start("--insecure-registries", reg)
	kubectl := n.kubectlFor(t)
	img, err := mutate.AppendLayers(empty.Image,
		busyboxLayer(t, map[string]string{"www/index.html": "from-the-registry\n", "etc/gone": "x", "etc/passwd": "root:x:0:0:root:/:/bin/sh\nweb:x:1000:1000::/:/bin/sh\n"}),
		fileLayer(t, map[string]string{"etc/.wh.gone": "", "etc/hello": "layer two\n"}))
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"httpd"}, Cmd: []string{"-f", "-p", "8080", "-h", "/www"},
		Env: []string{"PATH=/bin", "FROM_IMAGE=yes"}, WorkingDir: "/www"})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/private/web:v1"
	n.pushFromNetns(t, ref, img)
	digest, _ := img.Digest()
	kubectl("create", "secret", "docker-registry", "regcred", "--docker-server="+reg, "--docker-username=user", "--docker-password=pass")
	manifest := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers: [{name: web, image: "`+ref+`", ports: [{containerPort: 8080}]}]
`), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
	kubectl("rollout", "status", "deployment/web", "--timeout=90s")
	// A second pod of the same image does not pull it again.
	kubectl("scale", "deployment", "web", "--replicas=2")
	kubectl("rollout", "status", "deployment/web", "--timeout=90s")
	ip := n.clusterIP(t, "web")
	eventually(t, 20*time.Second, func() error {
		out, _, err := n.exec("curl", "-sS", "-m", "2", "http://"+ip+"/")
		if err != nil || out != "from-the-registry\n" {
			return fmt.Errorf("through the service: %q %v", out, err)
		}
		return nil
	})
	events := kubectl("get", "events", "--field-selector", "reason=Pulled", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
	if !strings.Contains(events, `Successfully pulled image "`+ref+`" in `) || !strings.Contains(events, `Container image "`+ref+`" already present on machine`) {
		t.Errorf("pull events:\n%s", events)
	}
	if pulling := kubectl("get", "events", "--field-selector", "reason=Pulling", "-o", "name"); strings.Count(strings.TrimSpace(pulling), "\n") != 0 {
		t.Errorf("the image was pulled more than once: %s", pulling)
	}
	pod := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
	in := func(pod, script string) string {
		out, errOut, err := n.exec("kubectl", "exec", pod, "--", "sh", "-c", script)
		if err != nil {
			t.Errorf("%s: %v %s", script, err, errOut)
		}
		return out
	}
	if got := in(pod, "ls /"); strings.Contains(got, "work") || !strings.Contains(got, "www") || !strings.Contains(got, "bin") {
		t.Errorf("ls / in the container: %q", got)
	}
	if got := in(pod, "cat /etc/hello; ls /etc; echo $FROM_IMAGE; pwd"); !strings.Contains(got, "layer two") || strings.Contains(got, "gone") ||
		!strings.HasSuffix(got, "yes\n/www\n") {
		t.Errorf("the image's files, env and directory: %q", got)
	}
	in(pod, "echo x > /etc/x; echo y > /index.html; echo z > /tmp/y")
	other := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[1].metadata.name}")
	if got := in(other, "ls /etc/x /index.html /tmp/y 2>&1 | grep -c 'No such file'"); got != "3\n" {
		t.Errorf("another container sees what the first wrote: %q", got)
	}
	for p, wrote := range map[string]string{"/etc/x": "x\n", "/index.html": "y\n", "/tmp/y": "z\n"} {
		if data, err := os.ReadFile(p); err == nil && string(data) == wrote {
			t.Errorf("what the container wrote to %s reached the host's", p)
		}
	}
	// By digest, from the store.
	kubectl("run", "bydigest", "--image="+reg+"/private/web@"+digest.String(), "--overrides", `{"spec":{"imagePullSecrets":[{"name":"regcred"}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/bydigest", "--timeout=60s")
	// Without the secret, a new image: ErrImagePull, then ImagePullBackOff.
	n.pushFromNetns(t, reg+"/private/other:v1", img)
	kubectl("run", "nosecret", "--image="+reg+"/private/other:v1")
	eventually(t, 30*time.Second, func() error {
		got := kubectl("get", "pod", "nosecret", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		if got != "ImagePullBackOff" && got != "ErrImagePull" {
			return fmt.Errorf("nosecret waiting %q", got)
		}
		if !strings.Contains(kubectl("get", "events", "--field-selector", "involvedObject.name=nosecret"), "UNAUTHORIZED") {
			return fmt.Errorf("no event with the registry's refusal")
		}
		return nil
	})
}

// `minicluster images` imports a docker save tarball into the node's store (offline);
// a pod with imagePullPolicy Never runs it; an image in use is not removed.
func TestImagesCommand(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t, map[string]string{"etc/motd": "imported\n"}))
	if err != nil {
		t.Fatal(err)
	}
	img, _ = mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"cat /etc/motd; exec sleep 3600"}})
	tag, _ := name.NewTag("example.com/offline/app:1.0")
	tarPath := filepath.Join(t.TempDir(), "app.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	images := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"images", "--data-dir", n.dataDir}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := images("import", tarPath); err != nil || !strings.Contains(out, "imported example.com/offline/app:1.0") {
		t.Fatalf("import: %v %s", err, out)
	}
	if out, _ := images(); !hasRow(out, "example.com/offline/app", "1.0") {
		t.Errorf("images:\n%s", out)
	}
	kubectl("run", "offline", "--image=example.com/offline/app:1.0", "--image-pull-policy=Never")
	kubectl("wait", "--for=condition=Ready", "pod/offline", "--timeout=60s")
	if out := kubectl("logs", "offline"); out != "imported\n" {
		t.Errorf("logs %q", out)
	}
	if id := kubectl("get", "pod", "offline", "-o", "jsonpath={.status.containerStatuses[0].imageID}"); !strings.HasPrefix(id, "example.com/offline/app@sha256:") {
		t.Errorf("imageID %q", id)
	}
	// securityContext: a read-only root (volumes still writable), no_new_privs; /sys
	// read-only; /etc/hostname the pod's.
	kubectl("run", "secure", "--image=example.com/offline/app:1.0", "--image-pull-policy=Never", "--overrides",
		`{"spec":{"containers":[{"name":"secure","image":"example.com/offline/app:1.0","imagePullPolicy":"Never",`+
			`"command":["sh","-c","grep NoNewPrivs /proc/self/status; exec sleep 3600"],`+
			`"securityContext":{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false},"volumeMounts":[{"name":"s","mountPath":"/scratch"}]}],`+
			`"volumes":[{"name":"s","emptyDir":{}}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/secure", "--timeout=60s")
	for script, want := range map[string]string{
		"touch /newfile 2>&1 | grep -o 'Read-only file system'": "Read-only file system\n",
		"touch /scratch/ok && echo ok":                          "ok\n",
		"cat /etc/hostname":                                     "secure\n",
		"touch /sys/x 2>&1 | grep -o 'Read-only file system'":   "Read-only file system\n",
	} {
		if out, errOut, err := n.exec("kubectl", "exec", "secure", "--", "sh", "-c", script); out != want {
			t.Errorf("%s: %q (%v %s), want %q", script, out, err, errOut, want)
		}
	}
	if out := kubectl("logs", "secure"); out != "NoNewPrivs:\t1\n" {
		t.Errorf("the container's no_new_privs: %q", out)
	}
	kubectl("delete", "pod", "secure", "--grace-period=1")
	if out, err := images("rm", "example.com/offline/app:1.0"); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("removing an image in use: %v %s", err, out)
	}
	kubectl("delete", "pod", "offline", "--grace-period=1")
	if out, err := images("rm", "example.com/offline/app:1.0"); err != nil {
		t.Errorf("rm: %v %s", err, out)
	}
	if out, _ := images(); strings.Contains(out, "offline") {
		t.Errorf("after rm:\n%s", out)
	}
}

// A full disk: the pull fails with the kernel's reason in the pod's status and events,
// leaves no partial root behind, the daemon goes on, and a later pull (once there is
// room) succeeds.
func TestImagePullFullDisk(t *testing.T) {
	n := newNode(t)
	reg := n.registryInNetns(t)
	store := filepath.Join(n.dataDir, "images")
	os.MkdirAll(store, 0o700)
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "minicluster-test", store)
	t.Cleanup(func() { unix.Unmount(store, unix.MNT_DETACH) }) // after the daemon has stopped
	n.start("--insecure-registries", reg)
	kubectl := n.kubectlFor(t)
	data := make([]byte, 6<<20)
	rand.Read(data) // incompressible: 6 MiB on the disk whatever the compression
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t, map[string]string{"big": string(data)}))
	if err != nil {
		t.Fatal(err)
	}
	img, _ = mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/sleep"}, Cmd: []string{"3600"}})
	n.pushFromNetns(t, reg+"/public/big:1", img)
	kubectl("run", "big", "--image="+reg+"/public/big:1")
	eventually(t, 30*time.Second, func() error {
		// ErrImagePull with the reason, then the kubelet's "Back-off pulling image".
		got := kubectl("get", "pod", "big", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}")
		if !(strings.HasPrefix(got, "ErrImagePull: ") && strings.Contains(got, "no space left on device")) && !strings.HasPrefix(got, "ImagePullBackOff: Back-off pulling image") {
			return fmt.Errorf("big waiting %q", got)
		}
		if !strings.Contains(kubectl("get", "events", "--field-selector", "involvedObject.name=big,reason=Failed"), "no space left on device") {
			return fmt.Errorf("no Failed event with the reason")
		}
		return nil
	})
	if entries, _ := os.ReadDir(filepath.Join(store, "rootfs")); len(entries) != 0 {
		t.Errorf("a failed pull left %v", entries)
	}
	kubectl("run", "small", "--image=busybox", "--", "sleep", "3600") // the daemon goes on
	kubectl("wait", "--for=condition=Ready", "pod/small", "--timeout=30s")
	mustRun(t, "mount", "-o", "remount,size=64m", store)
	kubectl("wait", "--for=condition=Ready", "pod/big", "--timeout=90s") // at its next try
}
