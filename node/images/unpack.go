package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteouts, as the OCI image spec writes them in a layer: ".wh.<name>" deletes <name>
// of the layers below, ".wh..wh..opq" empties its directory of them.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// ErrTooLarge is an image that would unpack to more than the store allows.
var ErrTooLarge = errors.New("image too large")

// unpacker applies layers, lowest first, to one directory. Every path is resolved by the
// kernel inside that directory (openat2 RESOLVE_IN_ROOT), so no entry — `..`, absolute
// paths, symlinks or hard links planted by an earlier entry — can write outside it.
type unpacker struct {
	root    *os.File
	limit   int64 // bytes the regular files may take in all
	written int64
	owner   bool // chown as the layer says (root only)
	layer   map[string]bool
}

var inRoot = unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}

func newUnpacker(dir string, limit int64) (*unpacker, error) {
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &unpacker{root: root, limit: limit, owner: os.Geteuid() == 0}, nil
}

func (u *unpacker) close() { u.root.Close() }

// apply unpacks one layer's tar stream (uncompressed).
func (u *unpacker) apply(r io.Reader) error {
	u.layer = map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" || name == "." {
			continue // the root itself
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		if err := u.entry(tr, hdr, dir, base); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
}

func (u *unpacker) entry(r io.Reader, hdr *tar.Header, dir, base string) error {
	parent, err := u.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	switch {
	case base == opaqueWhiteout:
		return u.emptyDir(parent, dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		return removeAt(parent, strings.TrimPrefix(base, whiteoutPrefix))
	}
	u.layer[path.Join(dir, base)] = true
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			removeAt(parent, base)
		}
		if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	case tar.TypeReg, tar.TypeRegA:
		if u.written += hdr.Size; u.written > u.limit {
			return ErrTooLarge
		}
		removeAt(parent, base)
		fd, err := unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), base)
		_, err = io.CopyN(f, r, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		removeAt(parent, base)
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return err
		}
	case tar.TypeLink:
		target := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		how := inRoot
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS // a link to the file itself, never through a symlink
		src, err := unix.Openat2(int(u.root.Fd()), target, &how)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(src)
		removeAt(parent, base)
		// Through /proc: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
		if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", src), parent, base, unix.AT_SYMLINK_FOLLOW); err != nil {
			return err
		}
		return nil // a hard link shares its target's owner and mode
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if !u.owner {
			return nil // devices need root; a test's unpack skips them
		}
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		removeAt(parent, base)
		if err := unix.Mknodat(parent, base, kind|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	default:
		return nil // pax globals and the like: nothing to make
	}
	if u.owner {
		if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return err
		}
	}
	mtime := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	unix.UtimesNanoAt(parent, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// mkdirAll makes dir inside the root, each step resolved inside it, and opens it.
func (u *unpacker) mkdirAll(dir string) (int, error) {
	fd, err := unix.Openat2(int(u.root.Fd()), "/"+dir, &inRoot)
	if err == nil || dir == "" || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parentDir, base := path.Split(dir)
	parent, err := u.mkdirAll(strings.TrimSuffix(parentDir, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return unix.Openat2(parent, base, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | unix.O_DIRECTORY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
}

// emptyDir removes what the layers below put in dir (an opaque whiteout), keeping what
// this layer wrote there.
func (u *unpacker) emptyDir(parent int, dir string) error {
	fd, err := unix.Openat(parent, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), dir)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if !u.layer[path.Join(dir, n)] {
			if err := removeAt(parent, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeAt removes name in dir, a directory with all it holds; a missing name is no error.
func removeAt(dir int, name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil
	}
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	sub, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(sub), name)
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if err := removeAt(sub, n); err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}
