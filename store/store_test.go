package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var cmKind = &Kind{Bucket: "core/configmaps", New: func() Object { return &corev1.ConfigMap{} }}

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "db")
	}
	s, err := Open(Config{Path: path, History: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkConsistent(t, s)
		s.Close()
	})
	return s
}

// checkConsistent runs bbolt's own consistency check over the whole file.
func checkConsistent(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Errorf("bbolt consistency: %v", err)
	}
}

func cm(ns, name, value string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"v": value}}
}

func rv(o Object) int64 {
	n, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return n
}

func TestCreateSetsServerFieldsAndRevisions(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	a, err := s.Create(ctx, cmKind, cm("ns", "a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, cmKind, cm("ns", "b", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if a.GetUID() == "" || a.GetUID() == b.GetUID() {
		t.Errorf("uids %q %q: want distinct and set", a.GetUID(), b.GetUID())
	}
	if ts := a.GetCreationTimestamp(); ts.IsZero() || a.GetGeneration() != 1 {
		t.Errorf("creationTimestamp %v generation %d", a.GetCreationTimestamp(), a.GetGeneration())
	}
	if rv(b) != rv(a)+1 || s.Rev() != rv(b) {
		t.Errorf("revisions a=%d b=%d store=%d: want consecutive", rv(a), rv(b), s.Rev())
	}
	if _, err := s.Create(ctx, cmKind, cm("ns", "a", "2")); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: got %v, want ErrExists", err)
	}
	got, err := s.Get(cmKind, "ns", "a")
	if err != nil || got.(*corev1.ConfigMap).Data["v"] != "1" || got.GetUID() != a.GetUID() {
		t.Errorf("get after failed duplicate: %v %v", got, err)
	}
}

func TestUpdateConflictAndNoop(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	a, _ := s.Create(ctx, cmKind, cm("ns", "a", "1"))
	stale := a.GetResourceVersion()
	up, err := s.Update(ctx, cmKind, "ns", "a", func(cur Object) (Object, error) {
		cur.(*corev1.ConfigMap).Data["v"] = "2"
		return cur, nil
	})
	if err != nil || rv(up) != rv(a)+1 {
		t.Fatalf("update: %v rv %s", err, up.GetResourceVersion())
	}
	_, err = s.Update(ctx, cmKind, "ns", "a", func(cur Object) (Object, error) {
		if cur.GetResourceVersion() != stale {
			return nil, ErrConflict
		}
		return cur, nil
	})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("stale update: got %v, want ErrConflict", err)
	}
	same, err := s.Update(ctx, cmKind, "ns", "a", func(cur Object) (Object, error) { return cur, nil })
	if err != nil || same.GetResourceVersion() != up.GetResourceVersion() || s.Rev() != rv(up) {
		t.Errorf("no-op update moved the revision: %v %s store %d", err, same.GetResourceVersion(), s.Rev())
	}
	if _, err := s.Update(ctx, cmKind, "ns", "missing", func(cur Object) (Object, error) { return cur, nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing: %v", err)
	}
}

func TestFinalizersDelayDeletion(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	obj := cm("ns", "f", "1")
	obj.Finalizers = []string{"example.com/hold"}
	s.Create(ctx, cmKind, obj)
	marked, gone, err := s.Delete(ctx, cmKind, "ns", "f", Preconditions{})
	if err != nil || gone || marked.GetDeletionTimestamp() == nil {
		t.Fatalf("delete with finalizer: gone=%v err=%v obj=%v", gone, err, marked)
	}
	if _, err := s.Get(cmKind, "ns", "f"); err != nil {
		t.Fatalf("object with finalizer vanished: %v", err)
	}
	_, err = s.Update(ctx, cmKind, "ns", "f", func(cur Object) (Object, error) {
		cur.SetFinalizers(nil)
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(cmKind, "ns", "f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after removing the last finalizer: %v, want ErrNotFound", err)
	}
}

func TestDeletePreconditions(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	a, _ := s.Create(ctx, cmKind, cm("ns", "a", "1"))
	if _, _, err := s.Delete(ctx, cmKind, "ns", "a", Preconditions{UID: "other"}); !errors.Is(err, ErrConflict) {
		t.Errorf("wrong uid: %v", err)
	}
	if _, gone, err := s.Delete(ctx, cmKind, "ns", "a", Preconditions{UID: string(a.GetUID())}); err != nil || !gone {
		t.Errorf("matching uid: gone=%v err=%v", gone, err)
	}
	if _, _, err := s.Delete(ctx, cmKind, "ns", "a", Preconditions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestListByNamespace(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	for _, k := range []string{"a/x", "a/y", "ab/z", "b/x"} {
		ns, name, _ := cut(k)
		s.Create(ctx, cmKind, cm(ns, name, "1"))
	}
	objs, rev, err := s.List(cmKind, "a", nil)
	if err != nil || len(objs) != 2 || rev != s.Rev() {
		t.Fatalf("list a: %d objects rev %d err %v", len(objs), rev, err)
	}
	all, _, _ := s.List(cmKind, "", func(o Object) bool { return o.GetName() == "x" })
	if len(all) != 2 {
		t.Errorf("filtered list across namespaces: %d, want 2", len(all))
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

func nextEvent(t *testing.T, w *Watcher) *Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return nil
}

func TestWatchResumeAndExpiry(t *testing.T) {
	s := openStore(t, "") // history of 16 events
	ctx := context.Background()
	start := s.Rev()
	a, _ := s.Create(ctx, cmKind, cm("ns", "a", "1"))
	w, err := s.Watch(cmKind, start)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := nextEvent(t, w); ev.Type != Added || ev.Rev != rv(a) {
		t.Errorf("resumed event %s rev %d, want ADDED %d", ev.Type, ev.Rev, rv(a))
	}
	s.Update(ctx, cmKind, "ns", "a", func(cur Object) (Object, error) {
		cur.(*corev1.ConfigMap).Data["v"] = "2"
		return cur, nil
	})
	ev := nextEvent(t, w)
	if ev.Type != Modified || ev.Prev.(*corev1.ConfigMap).Data["v"] != "1" {
		t.Errorf("got %s with prev %v, want MODIFIED with the old object", ev.Type, ev.Prev)
	}
	s.Delete(ctx, cmKind, "ns", "a", Preconditions{})
	if ev := nextEvent(t, w); ev.Type != Deleted || ev.Rev != s.Rev() {
		t.Errorf("got %s rev %d, want DELETED at %d", ev.Type, ev.Rev, s.Rev())
	}
	for i := 0; i < 20; i++ {
		s.Create(ctx, cmKind, cm("ns", fmt.Sprint("n", i), "1"))
	}
	if _, err := s.Watch(cmKind, start); !errors.Is(err, ErrExpired) {
		t.Errorf("watch from an evicted revision: %v, want ErrExpired", err)
	}
	if w2, err := s.Watch(cmKind, s.Rev()-3); err != nil {
		t.Errorf("watch from a kept revision: %v", err)
	} else {
		for i := 0; i < 3; i++ {
			nextEvent(t, w2)
		}
		w2.Stop()
	}
}

func TestWatchOtherKindsFiltered(t *testing.T) {
	s := openStore(t, "")
	other := &Kind{Bucket: "core/secrets", New: func() Object { return &corev1.Secret{} }}
	w, _ := s.Watch(cmKind, s.Rev())
	defer w.Stop()
	s.Create(context.Background(), other, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}})
	s.Create(context.Background(), cmKind, cm("ns", "c", "1"))
	if ev := nextEvent(t, w); ev.Object.GetName() != "c" {
		t.Errorf("watch of configmaps saw %s", ev.Object.GetName())
	}
}

// Concurrent writers are batched, every write gets its own revision, and watchers see
// them exactly once, in order.
func TestConcurrentWritersOrderedEvents(t *testing.T) {
	s, err := Open(Config{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer checkConsistent(t, s)
	w, _ := s.Watch(cmKind, s.Rev())
	defer w.Stop()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	revs := make(chan int64, writers*each)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				o, err := s.Create(context.Background(), cmKind, cm("ns", fmt.Sprintf("w%d-%d", i, j), "1"))
				if err != nil {
					t.Error(err)
					return
				}
				revs <- rv(o)
			}
		}()
	}
	wg.Wait()
	close(revs)
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Fatalf("revision %d acknowledged twice", r)
		}
		seen[r] = true
	}
	last := int64(0)
	for i := 0; i < writers*each; i++ {
		ev := nextEvent(t, w)
		if ev.Rev <= last || !seen[ev.Rev] {
			t.Fatalf("event %d has rev %d after %d", i, ev.Rev, last)
		}
		last = ev.Rev
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Create(context.Background(), cmKind, cm("ns", "a", "1"))
	rev := s.Rev()
	checkConsistent(t, s)
	s.Close()
	if _, err := s.Create(context.Background(), cmKind, cm("ns", "b", "1")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	s2 := openStore(t, path)
	got, err := s2.Get(cmKind, "ns", "a")
	if err != nil || got.GetUID() != a.GetUID() || s2.Rev() != rev {
		t.Fatalf("after reopen: %v %v rev %d want %d", got, err, s2.Rev(), rev)
	}
	if _, err := s2.Watch(cmKind, rev-1); !errors.Is(err, ErrExpired) {
		t.Errorf("watch before the reopen revision: %v, want ErrExpired", err)
	}
}

// A hook error rolls back whatever the hook wrote, even inside a batch.
func TestHookFailureRollsBack(t *testing.T) {
	s := openStore(t, "")
	k := &Kind{Bucket: cmKind.Bucket, New: cmKind.New, OnCreate: func(tx Txn, obj Object) error {
		if err := tx.Claim("pool", "x", obj.GetName()); err != nil {
			return err
		}
		if obj.GetName() == "bad" {
			return errors.New("refused")
		}
		return nil
	}}
	if _, err := s.Create(context.Background(), k, cm("ns", "bad", "1")); err == nil {
		t.Fatal("hook error not returned")
	}
	if _, err := s.Create(context.Background(), k, cm("ns", "good", "1")); err != nil {
		t.Fatalf("claim left behind by a failed write: %v", err)
	}
}
