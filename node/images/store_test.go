package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file of a test layer: a regular file unless link or kind says otherwise.
type entry struct {
	name, body, link string
	kind             byte
}

func layerTar(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: e.kind, Linkname: e.link, ModTime: time.Unix(1e9, 0)}
		switch e.kind {
		case 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func testImage(t testing.TB, layers ...[]byte) v1.Image {
	img := empty.Image
	for _, l := range layers {
		data := l
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	img, err := mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/hello"}, Cmd: []string{"--flag"}, Env: []string{"A=1"}, WorkingDir: "/work", User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A registry in the test: go-containerregistry's, behind wrap.
func testRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t testing.TB, host, repo string, img v1.Image, opts ...remote.Option) string {
	ref, err := name.ParseReference(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	return host + "/" + repo
}

func read(t *testing.T, root, p string) string {
	data, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(data)
}

// Layers applied in order with their whiteouts; an image by tag and by digest; the
// config kept; a second pull of the same image unpacks nothing.
func TestPullUnpacksLayers(t *testing.T) {
	host := testRegistry(t, nil)
	img := testImage(t,
		layerTar(t, entry{name: "bin/hello", body: "hi"}, entry{name: "etc/a", body: "a"}, entry{name: "etc/b", body: "b"},
			entry{name: "dir/x", body: "x"}, entry{name: "dir/y", body: "y"}),
		layerTar(t, entry{name: "etc/.wh.a"}, entry{name: "dir/z", body: "z"}, entry{name: "dir/.wh..wh..opq"},
			entry{name: "lnk", link: "/etc/b", kind: tar.TypeSymlink}, entry{name: "hl", link: "etc/b", kind: tar.TypeLink}))
	ref := push(t, host, "test/app:v1", img)
	s, err := New(Config{Dir: t.TempDir(), Insecure: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := s.RootFS(got)
	for p, want := range map[string]string{"bin/hello": "hi", "etc/b": "b", "dir/z": "z", "hl": "b"} {
		if got := read(t, root, p); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	for _, gone := range []string{"etc/a", "dir/x", "dir/y", "etc/.wh.a", "dir/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s is there, whited out", gone)
		}
	}
	if l, _ := os.Readlink(filepath.Join(root, "lnk")); l != "/etc/b" {
		t.Errorf("symlink %q", l)
	}
	if c := got.Config; c.WorkingDir != "/work" || c.User != "1000" || len(c.Entrypoint) != 1 || c.Env[0] != "A=1" {
		t.Errorf("config %+v", c)
	}
	d, _ := img.Digest()
	byDigest, err := s.Pull(context.Background(), host+"/test/app@"+d.String(), nil)
	if err != nil || byDigest.ID != got.ID {
		t.Fatalf("by digest: %v %v", byDigest, err)
	}
	if _, ok := s.Get("test/app:v1"); ok {
		t.Error("a reference of another registry matched")
	}
	if g, ok := s.Get(ref); !ok || g.ID != got.ID {
		t.Error("Get by tag")
	}
	// The store survives a restart.
	again, err := New(Config{Dir: filepath.Dir(filepath.Dir(root))})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := again.Get(ref); !ok || g.ID != got.ID {
		t.Error("lost across a restart")
	}
	if err := again.Remove(ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Get(ref); ok {
		t.Error("removed image still there")
	}
}

// A layer cannot write outside its root: `..`, absolute names, an entry through a
// symlink an earlier entry planted, a hard link to a file outside.
func TestUnpackStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644)
	root := t.TempDir()
	u, err := newUnpacker(root, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	if err := u.apply(bytes.NewReader(layerTar(t, entry{name: "../../escape", body: "x"}, entry{name: "/abs", body: "y"}))); err != nil {
		t.Fatal(err)
	}
	// Through a symlink an earlier entry planted: within the root, or refused.
	for _, layer := range [][]entry{
		{{name: "evil", link: outside, kind: tar.TypeSymlink}, {name: "evil/pwned", body: "z"}},
		{{name: "up", link: "../../../../..", kind: tar.TypeSymlink}, {name: "up/" + strings.TrimPrefix(outside, "/") + "/pwned2", body: "w"}},
		{{name: "etc", link: "/", kind: tar.TypeSymlink}, {name: "etc/" + strings.TrimPrefix(outside, "/") + "/pwned3", body: "w"}},
	} {
		u.apply(bytes.NewReader(layerTar(t, layer...)))
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("written outside the root: %v", entries)
	}
	if read(t, root, "escape") != "x" || read(t, root, "abs") != "y" {
		t.Errorf("entries not kept inside the root")
	}
	err = u.apply(bytes.NewReader(layerTar(t, entry{name: "hl", link: "../../../" + outside + "/secret", kind: tar.TypeLink})))
	if err == nil {
		t.Error("a hard link to a file outside the root was made")
	}
	if _, err := os.Lstat(filepath.Join(root, "hl")); err == nil {
		t.Error("hl exists")
	}
	big := newTestUnpacker(t, 10)
	if err := big.apply(bytes.NewReader(layerTar(t, entry{name: "f", body: strings.Repeat("x", 11)}))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an image over the limit: %v", err)
	}
}

func newTestUnpacker(t *testing.T, limit int64) *unpacker {
	u, err := newUnpacker(t.TempDir(), limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.close)
	return u
}

// Credentials: 401 without them, a pull with them; a layer whose bytes do not match its
// digest fails the pull and leaves nothing behind.
func TestPullAuthAndDigests(t *testing.T) {
	corrupt := false
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); r.Method == http.MethodGet && (!ok || u != "user" || p != "pass") {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			if corrupt && strings.Contains(r.URL.Path, "/blobs/") {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 40 {
					body[len(body)-20] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref := push(t, host, "private/app:v1", testImage(t, layerTar(t, entry{name: "f", body: strings.Repeat("data", 100)})))
	dir := t.TempDir()
	s, _ := New(Config{Dir: dir, Insecure: []string{host}})
	if _, err := s.Pull(context.Background(), ref, nil); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous pull: %v", err)
	}
	creds := authn.NewMultiKeychain(staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "user", Password: "pass"})})
	corrupt = true
	if _, err := s.Pull(context.Background(), ref, creds); err == nil {
		t.Error("a corrupted layer was accepted")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "rootfs")); len(entries) != 0 {
		t.Errorf("a failed pull left %v", entries)
	}
	corrupt = false
	if _, err := s.Pull(context.Background(), ref, creds); err != nil {
		t.Errorf("with credentials: %v", err)
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// `docker save` tarballs import under their tags.
func TestImportTarball(t *testing.T) {
	img := testImage(t, layerTar(t, entry{name: "hello", body: "from a tarball"}))
	tag, _ := name.NewTag("example.com/saved:1.0")
	path := filepath.Join(t.TempDir(), "saved.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	s, _ := New(Config{Dir: t.TempDir()})
	got, err := s.Import(path)
	if err != nil || len(got) != 1 {
		t.Fatalf("import: %v %v", got, err)
	}
	if read(t, s.RootFS(got[0]), "hello") != "from a tarball" || got[0].Refs[0] != "example.com/saved:1.0" {
		t.Errorf("imported %+v", got[0])
	}
}

// FuzzUnpack: no layer makes the unpacker panic or write outside its root.
func FuzzUnpack(f *testing.F) {
	f.Add(layerTar(f, entry{name: "a/b", body: "x"}, entry{name: "a/.wh..wh..opq"}, entry{name: "l", link: "/", kind: tar.TypeSymlink}, entry{name: "l/x", body: "y"}))
	f.Add(layerTar(f, entry{name: "../x", body: "x"}, entry{name: "h", link: "../x", kind: tar.TypeLink}, entry{name: ".wh.h"}))
	outside := f.TempDir()
	// Roots on a tmpfs where there is one: removing thousands of small trees on a disk
	// mounted with discard takes the fuzzer to a crawl.
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(base, "unpack-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		u, err := newUnpacker(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer u.close()
		u.apply(bytes.NewReader(data))
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("wrote outside the root: %v", entries)
		}
	})
}

// An OCI image layout in a tarball imports under the name its index gives.
func TestImportOCILayout(t *testing.T) {
	img := testImage(t, layerTar(t, entry{name: "hello", body: "from a layout"}))
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": "example.com/layout/app:2"})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		hdr, _ := tar.FileInfoHeader(fi, "")
		hdr.Name = rel
		tw.WriteHeader(hdr)
		if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(path)
			tw.Write(data)
		}
		return nil
	})
	tw.Close()
	tarPath := filepath.Join(t.TempDir(), "layout.tar")
	os.WriteFile(tarPath, buf.Bytes(), 0o644)
	s, _ := New(Config{Dir: t.TempDir()})
	got, err := s.Import(tarPath)
	if err != nil || len(got) != 1 {
		t.Fatalf("import: %v %v", got, err)
	}
	if read(t, s.RootFS(got[0]), "hello") != "from a layout" || got[0].Refs[0] != "example.com/layout/app:2" {
		t.Errorf("imported %+v", got[0])
	}
	if _, err := s.Import(filepath.Join(dir, "index.json")); err == nil {
		t.Error("a file that is neither was imported")
	}
}

// Garbage collection past the threshold: the least recently used images not in use go
// first, until the disk is below the low mark.
func TestGC(t *testing.T) {
	s, _ := New(Config{Dir: t.TempDir()})
	var ids []string
	for i, repo := range []string{"old", "inuse", "mid", "new"} {
		tag, err := name.NewTag("example.com/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "i.tar")
		if err := tarball.WriteToFile(path, tag, testImage(t, layerTar(t, entry{name: "f", body: repo}))); err != nil {
			t.Fatal(err)
		}
		got, err := s.Import(path)
		if err != nil {
			t.Fatal(err)
		}
		got[0].Pulled = time.Unix(int64(1000+i), 0)
		ids = append(ids, got[0].ID)
	}
	// Each image fills 10% of a disk that is 55% full without them.
	s.usage = func() (int, error) { return 55 + 10*len(s.List()), nil }
	inUse := func(img *Image) bool { return img.ID == ids[1] }
	if removed, _ := s.GC(96, 80, inUse); len(removed) != 0 {
		t.Errorf("below the high mark: removed %v", removed)
	}
	removed, err := s.GC(85, 80, inUse)
	if err != nil || strings.Join(removed, ",") != ids[0]+","+ids[2] {
		t.Errorf("removed %v (%v), want the two oldest unused, %s and %s", removed, err, ids[0], ids[2])
	}
	for _, keep := range []string{"example.com/inuse:1", "example.com/new:1"} {
		if _, ok := s.Get(keep); !ok {
			t.Errorf("%s went", keep)
		}
	}
}
