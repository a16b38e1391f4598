// Command e2eimages builds the images Kubernetes' e2e suite runs from what this host
// has (agnhost built from its sources by ../shared/conformance/build.sh; busybox, dig,
// curl, nginx from Debian packages), serves them from a registry of its own, and writes
// the KUBE_TEST_REPO_LIST file that points the suite at it — as anyone running
// conformance on an air-gapped cluster does. It serves until killed.
//
//	e2eimages -listen 127.0.0.1:5000 -agnhost /var/cache/minicluster-e2e/agnhost -repo-list FILE
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5000", "registry address")
	agnhost := flag.String("agnhost", "/var/cache/minicluster-e2e/agnhost", "agnhost binary (static)")
	coredns := flag.String("coredns", "/var/cache/minicluster-tools/coredns", "CoreDNS binary (make tools), /coredns in agnhost's image")
	repoList := flag.String("repo-list", "", "write the suite's KUBE_TEST_REPO_LIST file here")
	flag.Parse()
	if err := run(*listen, *agnhost, *coredns, *repoList); err != nil {
		log.Fatal(err)
	}
}

func run(listen, agnhost, coredns, repoList string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	images, err := build(agnhost, coredns)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(images))
	for ref := range images {
		names = append(names, ref)
	}
	sort.Strings(names)
	for _, ref := range names {
		r, err := name.ParseReference(ln.Addr().String()+"/"+ref, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(r, images[ref]); err != nil {
			return fmt.Errorf("push %s: %w", r, err)
		}
		log.Printf("pushed %s", r)
	}
	if repoList != "" {
		a := ln.Addr().String()
		list := fmt.Sprintf("gcRegistry: %[1]s\ngcEtcdRegistry: %[1]s\npromoterE2eRegistry: %[1]s/e2e-test-images\n"+
			"buildImageRegistry: %[1]s/build-image\nsigStorageRegistry: %[1]s/sig-storage\ndockerLibraryRegistry: %[1]s/library\n", a)
		if err := os.WriteFile(repoList, []byte(list), 0o644); err != nil {
			return err
		}
	}
	log.Printf("serving %d images on %s", len(images), ln.Addr())
	select {}
}

// build returns the images by their path under the registry.
func build(agnhostBin, corednsBin string) (map[string]v1.Image, error) {
	base := newLayer()
	if err := base.busybox(); err != nil {
		return nil, err
	}
	// glibc's getent, as the DNS specs call it; GNU wget, as Debian's busybox 1.35 wget
	// crashes on a refused connection with -T (the service specs' loop).
	for _, p := range []string{"getent", "wget"} {
		if err := base.binary(p); err != nil {
			return nil, err
		}
	}
	base.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
	base.file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
	base.file("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
	base.dir("tmp", 0o1777)
	base.dir("root", 0o700)
	baseLayer, err := base.layer()
	if err != nil {
		return nil, err
	}

	// agnhost as its image has it (test/images/agnhost/Dockerfile): /agnhost, the
	// agnhost-2 link, /uploads, porter's certificate, a user and group defined in the
	// image, and the tools the specs exec in it (dig, nslookup, curl, nc, ip).
	ag := newLayer()
	if err := ag.hostFile(agnhostBin, "agnhost", 0o755); err != nil {
		return nil, err
	}
	ag.symlink("agnhost-2", "agnhost")
	if err := ag.binaryAt(corednsBin, "coredns"); err != nil { // the DNS specs run /coredns
		return nil, err
	}
	ag.dir("uploads", 0o755)
	src, err := agnhostSource()
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		if err := ag.hostFile(filepath.Join(src, "porter", f), f, 0o644); err != nil {
			return nil, err
		}
	}
	ag.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"+
		"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n", 0o644)
	ag.file("etc/group", "root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n", 0o644)
	for _, p := range []string{"dig", "nslookup", "host", "curl", "nc", "ip"} {
		if err := ag.binary(p); err != nil {
			return nil, err
		}
	}
	agLayer, err := ag.layer()
	if err != nil {
		return nil, err
	}

	dns := newLayer()
	for _, p := range []string{"dig", "nslookup", "host"} {
		if err := dns.binary(p); err != nil {
			return nil, err
		}
	}
	dnsLayer, err := dns.layer()
	if err != nil {
		return nil, err
	}

	// nginx as the official image serves: port 80, /usr/share/nginx/html.
	ngx := newLayer()
	if err := ngx.binary("nginx"); err != nil {
		return nil, err
	}
	if err := ngx.hostFile("/etc/nginx/mime.types", "etc/nginx/mime.types", 0o644); err != nil {
		return nil, err
	}
	ngx.file("etc/nginx/nginx.conf", `worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log /dev/stdout;
  server {
    listen 80;
    location / { root /usr/share/nginx/html; index index.html; }
  }
}
`, 0o644)
	ngx.file("usr/share/nginx/html/index.html", "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1></body></html>\n", 0o644)
	ngx.dir("var/lib/nginx", 0o755)
	ngx.dir("var/log/nginx", 0o755)
	ngx.dir("run", 0o755)
	ngxLayer, err := ngx.layer()
	if err != nil {
		return nil, err
	}

	// httpd: busybox's httpd standing in for Apache's, with the official image's
	// document root, page and command.
	web := newLayer()
	web.file("usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n", 0o644)
	web.file("usr/local/bin/httpd-foreground", "#!/bin/sh\nexec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n", 0o755)
	webLayer, err := web.layer()
	if err != nil {
		return nil, err
	}

	// nonewprivs: nnp, set-uid root, says which uid it runs as (the image's C program,
	// in Go).
	nnp, err := goProgram(`package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf("Effective uid: %d\n", os.Geteuid()) }
`)
	if err != nil {
		return nil, err
	}
	nnpl := newLayer()
	nnpl.file("usr/local/bin/nnp", string(nnp), 0o4755)
	nnpLayer, err := nnpl.layer()
	if err != nil {
		return nil, err
	}

	path := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	mk := func(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
		img, err := mutate.AppendLayers(empty.Image, append([]v1.Layer{baseLayer}, layers...)...)
		if err != nil {
			return nil, err
		}
		cfg.Env = append(cfg.Env, path)
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.Architecture, cf.OS, cf.Config = "amd64", "linux", cfg
		return mutate.ConfigFile(img, cf)
	}
	specs := []struct {
		refs   []string
		cfg    v1.Config
		layers []v1.Layer
	}{
		{[]string{"e2e-test-images/agnhost:2.53"}, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, []v1.Layer{agLayer}},
		{[]string{"pause:3.10"}, v1.Config{Entrypoint: []string{"/agnhost", "pause"}}, []v1.Layer{agLayer}},
		{[]string{"e2e-test-images/busybox:1.29-2", "e2e-test-images/busybox:1.36.1-1", "library/busybox:1.36", "library/busybox:latest"},
			v1.Config{Cmd: []string{"sh"}}, nil},
		{[]string{"e2e-test-images/jessie-dnsutils:1.7"}, v1.Config{Cmd: []string{"sh"}}, []v1.Layer{dnsLayer}},
		{[]string{"e2e-test-images/nonewprivs:1.3"}, v1.Config{Cmd: []string{"nnp"}}, []v1.Layer{nnpLayer}},
		{[]string{"e2e-test-images/nonroot:1.4"}, v1.Config{Cmd: []string{"sh"}, User: "1234"}, nil},
		{[]string{"e2e-test-images/nginx:1.14-4", "e2e-test-images/nginx:1.15-4"},
			v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}, []v1.Layer{ngxLayer}},
		{[]string{"e2e-test-images/httpd:2.4.38-4", "e2e-test-images/httpd:2.4.39-4"},
			v1.Config{Cmd: []string{"httpd-foreground"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}, []v1.Layer{webLayer}},
	}
	images := map[string]v1.Image{}
	for _, s := range specs {
		img, err := mk(s.cfg, s.layers...)
		if err != nil {
			return nil, err
		}
		for _, ref := range s.refs {
			images[ref] = img
		}
	}
	return images, nil
}

// goProgram builds a static Go program from its source.
func goProgram(src string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "e2eimages")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module prog\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "build", "-o", "prog", ".")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w: %s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "prog"))
}

// agnhostSource is agnhost's source directory in the Go module cache (build.sh put it there).
func agnhostSource() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "k8s.io/kubernetes@v1.32.*/test/images/agnhost"))
	if len(dirs) == 0 {
		return "", fmt.Errorf("agnhost's sources are not in the module cache: run ../shared/conformance/build.sh")
	}
	return dirs[len(dirs)-1], nil
}

// layerBuilder collects a layer's entries by path.
type layerBuilder struct {
	entries map[string]*tar.Header
	data    map[string][]byte
}

func newLayer() *layerBuilder {
	return &layerBuilder{entries: map[string]*tar.Header{}, data: map[string][]byte{}}
}

var epoch = time.Unix(1e9, 0)

func (l *layerBuilder) parents(p string) {
	for d := filepath.Dir(p); d != "." && d != "/"; d = filepath.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = &tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}
		}
	}
}

func (l *layerBuilder) file(p, body string, mode int64) {
	l.parents(p)
	l.entries[p] = &tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: epoch}
	l.data[p] = []byte(body)
}

func (l *layerBuilder) dir(p string, mode int64) {
	l.parents(p)
	l.entries[p] = &tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: epoch}
}

func (l *layerBuilder) symlink(p, target string) {
	l.parents(p)
	l.entries[p] = &tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: epoch}
}

func (l *layerBuilder) hostFile(src, p string, mode int64) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	l.file(p, string(data), mode)
	return nil
}

var libRE = regexp.MustCompile(`(/\S+\.so[.\d]*)`)

// binary adds a host program at its own path with the libraries it links.
func (l *layerBuilder) binary(prog string) error {
	path, err := exec.LookPath(prog)
	if err != nil {
		return fmt.Errorf("%s is not installed on this host: %w", prog, err)
	}
	return l.binaryAt(path, strings.TrimPrefix(path, "/"))
}

// binaryAt adds the program at path as p, with the libraries it links.
func (l *layerBuilder) binaryAt(path, p string) error {
	if err := l.hostFile(path, p, 0o755); err != nil {
		return err
	}
	out, _ := exec.Command("ldd", path).Output()
	for _, lib := range libRE.FindAllString(string(out), -1) {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return err
		}
		if err := l.hostFile(real, strings.TrimPrefix(lib, "/"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// busybox adds the host's busybox with a link for each of its applets in /bin.
func (l *layerBuilder) busybox() error {
	if err := l.binary("busybox"); err != nil {
		return err
	}
	bb, _ := exec.LookPath("busybox")
	if err := l.hostFile(bb, "bin/busybox", 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && applet != "sh" {
			l.symlink("bin/"+applet, "busybox")
		}
	}
	// sh is busybox's ash, as in the image — but busybox 1.36's ash passes on
	// environment variables whose names are not the shell's (envFrom's "data-1") and
	// Debian's 1.35 drops them, so with such a variable sh is bash, which keeps them.
	bash, err := exec.LookPath("bash")
	if err != nil {
		return err
	}
	if err := l.binary("bash"); err != nil {
		return err
	}
	sh, err := goProgram(fmt.Sprintf(`package main

import (
	"os"
	"regexp"
	"strings"
	"syscall"
)

func main() {
	shell := "/bin/busybox"
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !regexp.MustCompile("^[A-Za-z_][A-Za-z0-9_]*$").MatchString(name) {
			shell = %q
			break
		}
	}
	err := syscall.Exec(shell, os.Args, os.Environ())
	os.Stderr.WriteString("sh: " + err.Error() + "\n")
	os.Exit(127)
}
`, bash))
	if err != nil {
		return err
	}
	l.file("bin/sh", string(sh), 0o755)
	return nil
}

func (l *layerBuilder) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := tw.WriteHeader(l.entries[p]); err != nil {
			return nil, err
		}
		if _, err := tw.Write(l.data[p]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
