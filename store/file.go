package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/google/renameio/v2"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ErrDamaged is wrapped by Open and Verify when the file is not a whole bbolt database.
var ErrDamaged = errors.New("database damaged")

// BackupSuffix names the copy the daemon keeps next to its database: Backup writes it
// each time the database opens whole.
const BackupSuffix = ".backup"

// openChecked opens the bolt file at path and reads every page of it before anyone
// else does. bbolt trusts its file: a damaged page panics ("assertion failed: Page
// expected to be: 4") and a truncated file faults on its memory map, both killing the
// process. Here both are caught — the walk runs in this goroutine with faults turned
// into panics — and reported as ErrDamaged. An existing empty file is damage too: bbolt
// would make a new database of it, an empty cluster over a lost one.
func openChecked(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return bolt.Open(path, 0o600, opts) // a new cluster
	case err != nil:
		return nil, err
	case fi.Size() == 0:
		return nil, fmt.Errorf("%w: %s is empty (0 bytes)", ErrDamaged, path)
	}
	// bbolt's file is kept so that a panic inside bolt.Open can still close it (and
	// drop its lock).
	var file *os.File
	o := *opts
	o.PreLoadFreelist = true // read-only too: the freelist is read here, not in Check's goroutine
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			} else if file != nil {
				// The memory map bbolt leaves keeps the open file, and so its lock,
				// alive after Close: unlock first.
				unix.Flock(int(file.Fd()), unix.LOCK_UN)
				file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &o)
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	if err := db.View(func(tx *bolt.Tx) error { return walk(tx, fi.Size()) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	return db, nil
}

// walk reads every key and value of every bucket, then runs bbolt's own consistency
// check (pages reachable or free, none twice). The walk comes first and in the caller's
// goroutine: Check runs in one of its own, where a bad page could not be recovered.
func walk(tx *bolt.Tx, fileSize int64) error {
	if tx.Size() > fileSize {
		return fmt.Errorf("file is %d bytes, its pages reach to %d (truncated)", fileSize, tx.Size())
	}
	var visit func(b *bolt.Bucket) error
	visit = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return visit(b.Bucket(k))
			}
			return nil
		})
	}
	if err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return visit(b) }); err != nil {
		return err
	}
	for err := range tx.Check() {
		return err
	}
	return nil
}

// Verify opens the database at path read-only, checks all of it, and closes it.
func Verify(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := openChecked(path, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("%s is in use by a running daemon", path)
	}
	if err != nil {
		return err
	}
	return db.Close()
}

// Backup writes a consistent copy of the whole database to w (one read transaction:
// writers go on meanwhile).
func (s *Store) Backup(w io.Writer) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// BackupFile writes a consistent copy to path, atomically: a reader of path sees the
// old copy or the new one, whole.
func (s *Store) BackupFile(path string) error {
	return writeAtomic(path, s.Backup, nil)
}

// SaveBackup writes the database copy read from r to path — only once it checks whole,
// so a copy cut short never replaces a good one — and returns its size.
func SaveBackup(path string, r io.Reader) (int64, error) {
	var n int64
	err := writeAtomic(path, func(w io.Writer) (err error) {
		n, err = io.Copy(w, r)
		return err
	}, Verify)
	return n, err
}

// writeAtomic writes path through fill into a temporary file beside it, runs check on
// that file if given, and then puts it in place of path (synced, renamed).
func writeAtomic(path string, fill func(io.Writer) error, check func(tmp string) error) error {
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if err := fill(f); err != nil {
		return err
	}
	if check != nil {
		if err := check(f.Name()); err != nil {
			return err
		}
	}
	return f.CloseAtomicallyReplace()
}

// Restore puts the database copy from into place at path after checking it whole. The
// file it replaces, if any, is kept as path.replaced-<time>. No daemon may have path open.
func Restore(from, path string) (replaced string, err error) {
	if err := Verify(from); err != nil {
		return "", fmt.Errorf("restore from %s: %w", from, err)
	}
	if f, err := os.Open(path); err == nil {
		// bbolt holds an exclusive flock on the file it has open; the file may be
		// damaged, so it is not opened with bbolt here.
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s is in use by a running daemon: stop it first", path)
		}
		replaced = path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if err := copyFile(path, replaced); err != nil {
			return "", err
		}
	}
	return replaced, copyFile(from, path)
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	return writeAtomic(to, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	}, nil)
}
