package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// filledStore writes n configmaps of about 1 KiB into a new database and closes it.
func filledStore(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.Create(context.Background(), cmKind, cm("ns", "cm-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i), strings.Repeat("v", 1024))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

// Issue 19 (10): a damaged file must stop Open with ErrDamaged — before, bbolt panicked
// on a bad page, faulted on a truncated file, and started an empty cluster on an empty one.
func TestOpenDamagedDatabase(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"empty": func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
		"pages overwritten": func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			page := os.Getpagesize()
			for i := 2 * page; i < len(data); i++ { // all but the two meta pages
				data[i] = byte(i*7 + 3)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	damage["data pages overwritten"] = func(t *testing.T, path string) {
		// Only leaf and branch pages: the meta pages and the freelist stay whole, so
		// bbolt opens the file and the damage is met when the pages are read.
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
		if err != nil {
			t.Fatal(err)
		}
		var pages []int
		db.View(func(tx *bolt.Tx) error {
			for id := 2; ; id++ {
				p, err := tx.Page(id)
				if err != nil || p == nil {
					return err
				}
				if p.Type == "leaf" || p.Type == "branch" {
					pages = append(pages, id)
				}
			}
		})
		db.Close()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		garbage := make([]byte, os.Getpagesize())
		for i := range garbage {
			garbage[i] = byte(i*13 + 5)
		}
		for _, id := range pages {
			if _, err := f.WriteAt(garbage, int64(id*len(garbage))); err != nil {
				t.Fatal(err)
			}
		}
		if len(pages) == 0 {
			t.Fatal("no data pages found")
		}
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			path := filledStore(t, 300)
			f(t, path)
			s, err := Open(Config{Path: path})
			if err == nil {
				s.Close()
				t.Fatal("a damaged database opened")
			}
			t.Log(err)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrDamaged naming %s", err, path)
			}
			if err := Verify(path); !errors.Is(err, ErrDamaged) {
				t.Fatalf("Verify: %v, want ErrDamaged", err)
			}
		})
	}
}

func TestBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := s.Create(ctx, cmKind, cm("ns", n, n)); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(dir, "db.backup")
	if err := s.BackupFile(backup); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, cmKind, cm("ns", "c", "after the backup")); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(backup, path); err == nil || !strings.Contains(err.Error(), "in use by a running daemon") {
		t.Fatalf("restore over an open database: %v", err)
	}
	s.Close()
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(filepath.Join(dir, "nothing"), path); err == nil {
		t.Fatal("restored from a missing file")
	}
	replaced, err := Restore(backup, path)
	if err != nil {
		t.Fatal(err)
	}
	if old, err := os.ReadFile(replaced); err != nil || string(old) != "garbage" {
		t.Fatalf("replaced file %s: %q %v", replaced, old, err)
	}
	s = openStore(t, path)
	objs, _, err := s.List(cmKind, "ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	if strings.Join(names, ",") != "a,b" {
		t.Fatalf("restored objects %v, want a,b", names)
	}
}
