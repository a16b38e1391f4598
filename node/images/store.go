// Package images is the node's image store: images pulled from registries (OCI and
// Docker v2, with go-containerregistry) or imported from tarballs, each unpacked once,
// with its layers' whiteouts applied, into a root filesystem its containers share
// (read-only, under a writable layer of their own), and its config (entrypoint, cmd,
// env, working directory, user).
//
// Layout under the store's directory:
//
//	index.json             reference → image (digests, size, times)
//	rootfs/<config digest> the unpacked root filesystem of an image
//	tmp/                   unpacks in progress (removed at start)
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Config configures the store.
type Config struct {
	// Dir holds the store (e.g. <data dir>/images).
	Dir string
	// MaxImageSize bounds what one image may unpack to (default 8 GiB).
	MaxImageSize int64
	// Insecure registries are reached over plain HTTP (a local test registry).
	Insecure []string
	Log      *slog.Logger
}

// Image is one image in the store.
type Image struct {
	// Refs are the references it was pulled or imported as (normalised: docker.io/library/nginx:latest).
	Refs []string `json:"refs"`
	// Digest is the manifest's (repo@digest pulls match it); ID the config's.
	Digest   string    `json:"digest"`
	ID       string    `json:"id"`
	Size     int64     `json:"size"` // compressed layers, as the registry serves them
	Pulled   time.Time `json:"pulled"`
	LastUsed time.Time `json:"lastUsed"`
	// Config is the image's config: Entrypoint, Cmd, Env, WorkingDir, User.
	Config v1.Config `json:"config"`
}

// Store is the node's images.
type Store struct {
	cfg Config
	log *slog.Logger

	// usage is how full the store's filesystem is, in percent.
	usage func() (int, error)

	mu     sync.Mutex
	images map[string]*Image // by ID
	loaded time.Time         // the index's modification time when read
	pulls  map[string]*pull  // in flight, by reference: one pull per image at a time
}

type pull struct {
	done chan struct{}
	img  *Image
	err  error
}

// New opens (or makes) the store.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("images: no directory")
	}
	if cfg.MaxImageSize == 0 {
		cfg.MaxImageSize = 8 << 30
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "rootfs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	os.RemoveAll(filepath.Join(cfg.Dir, "tmp")) // an unpack a crash cut short
	s := &Store{cfg: cfg, log: cfg.Log, images: map[string]*Image{}, pulls: map[string]*pull{}}
	s.usage = func() (int, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(cfg.Dir, &st); err != nil || st.Blocks == 0 {
			return 0, err
		}
		return int(100 - st.Bavail*100/st.Blocks), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s, s.loadLocked()
}

// loadLocked reads the index when it changed on disk (`minicluster images` beside a
// running daemon changes it).
func (s *Store) loadLocked() error {
	fi, err := os.Stat(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.ModTime().Equal(s.loaded) {
		return nil
	}
	data, err := os.ReadFile(s.indexPath())
	if err != nil {
		return err
	}
	var list []*Image
	if len(data) > 0 {
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("images: index: %w", err)
		}
	}
	s.images = map[string]*Image{}
	for _, img := range list {
		if _, err := os.Stat(s.RootFS(img)); err == nil {
			s.images[img.ID] = img
		}
	}
	s.loaded = fi.ModTime()
	return nil
}

// locked runs f with the store locked against other processes too, the index fresh.
func (s *Store) locked(f func() error) error {
	lock, err := os.OpenFile(filepath.Join(s.cfg.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	return s.saveLocked()
}

func (s *Store) indexPath() string { return filepath.Join(s.cfg.Dir, "index.json") }

// RootFS is where an image's root filesystem is.
func (s *Store) RootFS(img *Image) string {
	return filepath.Join(s.cfg.Dir, "rootfs", strings.ReplaceAll(img.ID, ":", "-"))
}

// Normalize is the full form of a reference, as the kubelet reports it
// (nginx → docker.io/library/nginx:latest).
func Normalize(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	return strings.Replace(r.Name(), "index.docker.io/", "docker.io/", 1), nil
}

// Get finds an image by reference (tag or digest), if the store has it.
func (s *Store) Get(ref string) (*Image, bool) {
	full, err := Normalize(ref)
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadLocked()
	for _, img := range s.images {
		if slices.Contains(img.Refs, full) || strings.HasSuffix(full, "@"+img.Digest) {
			return img, true
		}
	}
	return nil, false
}

// List is every image, newest first.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadLocked()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, *img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pulled.After(out[j].Pulled) })
	return out
}

// Used notes that a container started from img (for garbage collection).
func (s *Store) Used(img *Image) {
	s.mu.Lock()
	img.LastUsed = time.Now()
	s.mu.Unlock()
}

// Pull fetches ref from its registry for this node's platform, with keychain's
// credentials, and unpacks it; concurrent pulls of one reference share one.
func (s *Store) Pull(ctx context.Context, ref string, keychain authn.Keychain) (*Image, error) {
	full, err := Normalize(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	s.mu.Lock()
	if p, ok := s.pulls[full]; ok {
		s.mu.Unlock()
		select {
		case <-p.done:
			return p.img, p.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p := &pull{done: make(chan struct{})}
	s.pulls[full] = p
	s.mu.Unlock()
	p.img, p.err = s.pull(ctx, full, keychain)
	s.mu.Lock()
	delete(s.pulls, full)
	s.mu.Unlock()
	close(p.done)
	return p.img, p.err
}

func (s *Store) pull(ctx context.Context, full string, keychain authn.Keychain) (*Image, error) {
	var opts []name.Option
	for _, reg := range s.cfg.Insecure {
		if strings.HasPrefix(full, reg+"/") {
			opts = append(opts, name.Insecure)
		}
	}
	r, err := name.ParseReference(full, opts...)
	if err != nil {
		return nil, err
	}
	if keychain == nil {
		keychain = authn.NewMultiKeychain() // anonymous
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}))
	if err != nil {
		return nil, err
	}
	return s.add(img, full)
}

// Import adds the images of a `docker save` tarball, or of an OCI image layout in a
// tarball (`podman save --format oci-archive`), under the references it names.
func (s *Store) Import(path string) ([]*Image, error) {
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		if out, lerr := s.importLayout(path); lerr == nil {
			return out, nil
		} else if !errors.Is(lerr, errNotLayout) {
			return out, lerr
		}
		return nil, fmt.Errorf("neither a docker save tarball nor an OCI layout: %w", err)
	}
	var out []*Image
	for _, m := range manifest {
		for _, tag := range m.RepoTags {
			t, err := name.NewTag(tag)
			if err != nil {
				return out, err
			}
			img, err := tarball.ImageFromPath(path, &t)
			if err != nil {
				return out, err
			}
			full, _ := Normalize(tag)
			got, err := s.add(img, full)
			if err != nil {
				return out, err
			}
			out = append(out, got)
		}
	}
	return out, nil
}

var errNotLayout = errors.New("not an OCI image layout")

// importLayout imports the images an OCI layout tarball's index names: by the
// annotation io.containerd.image.name, else org.opencontainers.image.ref.name when it is
// a full reference; an index of several platforms gives this node's.
func (s *Store) importLayout(path string) ([]*Image, error) {
	tmp := filepath.Join(s.cfg.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "layout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	u, err := newUnpacker(dir, s.cfg.MaxImageSize) // the tarball is untrusted too
	if err == nil {
		err = u.apply(f)
		u.close()
	}
	f.Close()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return nil, errNotLayout
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, desc := range im.Manifests {
		ref := desc.Annotations["io.containerd.image.name"]
		if ref == "" {
			ref = desc.Annotations[specs.AnnotationRefName]
		}
		full, err := Normalize(ref)
		if ref == "" || err != nil || !strings.Contains(ref, "/") && !strings.Contains(ref, ":") {
			return out, fmt.Errorf("manifest %s: no image name in its annotations", desc.Digest)
		}
		var img v1.Image
		if desc.MediaType.IsIndex() {
			sub, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return out, err
			}
			if img, err = platformImage(sub); err != nil {
				return out, err
			}
		} else if img, err = idx.Image(desc.Digest); err != nil {
			return out, err
		}
		got, err := s.add(img, full)
		if err != nil {
			return out, err
		}
		out = append(out, got)
	}
	return out, nil
}

// platformImage is this node's image of a multi-platform index.
func platformImage(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if p := d.Platform; p != nil && p.OS == "linux" && p.Architecture == goruntime.GOARCH {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for linux/%s in the index", goruntime.GOARCH)
}

// add unpacks img (once per config digest) and records it under ref.
func (s *Store) add(img v1.Image, ref string) (*Image, error) {
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	have := s.images[id.String()]
	s.mu.Unlock()
	if have == nil {
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		var size int64
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return nil, err
			}
			size += n
		}
		entry := &Image{Digest: digest.String(), ID: id.String(), Size: size, Pulled: time.Now(), Config: cf.Config}
		if err := s.unpack(entry, layers); err != nil {
			return nil, err
		}
		have = entry
	}
	err = s.locked(func() error {
		if cur := s.images[have.ID]; cur != nil {
			have = cur
		} else if _, err := os.Stat(s.RootFS(have)); err != nil {
			return err // removed meanwhile
		}
		if !slices.Contains(have.Refs, ref) {
			have.Refs = append(have.Refs, ref)
		}
		// A reference names one image: it leaves an older one it named.
		for _, other := range s.images {
			if other.ID != have.ID {
				other.Refs = slices.DeleteFunc(other.Refs, func(r string) bool { return r == ref })
			}
		}
		s.images[have.ID] = have
		return nil
	})
	return have, err
}

// unpack applies the layers into a temporary directory and moves it into place.
func (s *Store) unpack(img *Image, layers []v1.Layer) error {
	tmp := filepath.Join(s.cfg.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(tmp, "unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	u, err := newUnpacker(dir, s.cfg.MaxImageSize)
	if err != nil {
		return err
	}
	defer u.close()
	for i, l := range layers {
		rc, err := l.Uncompressed() // a digest that does not match fails the read
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		err = u.apply(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return os.Rename(dir, s.RootFS(img))
}

func (s *Store) saveLocked() error {
	list := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		list = append(list, img)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	data, _ := json.MarshalIndent(list, "", "  ")
	tmp := s.indexPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.indexPath()); err != nil {
		return err
	}
	if fi, err := os.Stat(s.indexPath()); err == nil {
		s.loaded = fi.ModTime()
	}
	return nil
}

// Remove deletes the image a reference names (its root filesystem goes with it when no
// other reference names it). inUse says whether a container runs it.
func (s *Store) Remove(ref string, inUse func(*Image) bool) error {
	full, err := Normalize(ref)
	if err != nil {
		return err
	}
	return s.locked(func() error {
		for _, img := range s.images {
			if !slices.Contains(img.Refs, full) && !strings.HasSuffix(full, "@"+img.Digest) {
				continue
			}
			img.Refs = slices.DeleteFunc(img.Refs, func(r string) bool { return r == full })
			if strings.Contains(full, "@") || len(img.Refs) == 0 {
				if inUse != nil && inUse(img) {
					return fmt.Errorf("image %s is in use by a container", img.ID)
				}
				delete(s.images, img.ID)
				return os.RemoveAll(s.RootFS(img))
			}
			return nil
		}
		return fmt.Errorf("image %q not found", ref)
	})
}

// GC removes images no container uses, the least recently used first, while the store's
// filesystem is more than high percent full, until it is below low (the kubelet's image
// garbage collection). It returns the IDs it removed.
func (s *Store) GC(high, low int, inUse func(*Image) bool) ([]string, error) {
	used, err := s.usage()
	if err != nil || used <= high {
		return nil, err
	}
	candidates := s.List()
	sort.Slice(candidates, func(i, j int) bool { return lastUse(&candidates[i]).Before(lastUse(&candidates[j])) })
	var removed []string
	for i := range candidates {
		if used < low {
			break
		}
		img := &candidates[i]
		err := s.locked(func() error {
			cur := s.images[img.ID]
			if cur == nil || inUse != nil && inUse(cur) {
				return nil
			}
			delete(s.images, cur.ID)
			removed = append(removed, cur.ID)
			return os.RemoveAll(s.RootFS(cur))
		})
		if err != nil {
			return removed, err
		}
		if used, err = s.usage(); err != nil {
			return removed, err
		}
	}
	if used >= low {
		return removed, fmt.Errorf("image garbage collection left the disk %d%% full (wanted below %d%%): the remaining images are in use", used, low)
	}
	return removed, nil
}

func lastUse(img *Image) time.Time {
	if img.LastUsed.After(img.Pulled) {
		return img.LastUsed
	}
	return img.Pulled
}
