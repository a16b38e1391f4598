package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Object is what the store keeps: any Kubernetes API object.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind tells the store how to keep one resource.
type Kind struct {
	// Bucket names the bolt bucket, e.g. "apps/deployments".
	Bucket string
	New    func() Object
	// OnCreate runs in the write transaction before a new object is stored (allocations).
	OnCreate func(t Txn, obj Object) error
	// OnUpdate runs in the write transaction before an update is stored.
	OnUpdate func(t Txn, obj, old Object) error
	// OnDelete runs in the write transaction when the object is finally removed.
	OnDelete func(t Txn, obj Object) error
	// OnMark adjusts an object when its deletion is marked but must wait (a namespace
	// turns Terminating).
	OnMark func(obj Object)
	// Finalizing reports whether deletion must wait; by default, while
	// metadata.finalizers is not empty.
	Finalizing func(obj Object) bool
}

func (k *Kind) finalizing(obj Object) bool {
	if k.Finalizing != nil {
		return k.Finalizing(obj)
	}
	return len(obj.GetFinalizers()) > 0
}

// Txn is the write transaction handed to Kind hooks.
type Txn struct{ tx *bolt.Tx }

func key(ns, name string) []byte { return []byte(ns + "/" + name) }

func (s *Store) decode(k *Kind, data []byte) (Object, error) {
	obj := k.New()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k.Bucket, err)
	}
	return obj, nil
}

func get(tx *bolt.Tx, k *Kind, ns, name string) []byte {
	b := tx.Bucket([]byte(k.Bucket))
	if b == nil {
		return nil
	}
	return b.Get(key(ns, name))
}

// Get returns the object ns/name (ns is empty for cluster-scoped kinds).
func (s *Store) Get(k *Kind, ns, name string) (Object, error) {
	var obj Object
	err := s.db.View(func(tx *bolt.Tx) error {
		data := get(tx, k, ns, name)
		if data == nil {
			return ErrNotFound
		}
		var err error
		obj, err = s.decode(k, data)
		return err
	})
	return obj, err
}

// List returns the objects of kind k in namespace ns (all namespaces when ns is
// empty) that keep returns true for, and the revision the list is consistent with.
func (s *Store) List(k *Kind, ns string, keep func(Object) bool) ([]Object, int64, error) {
	objs, rev, _, err := s.ListPage(k, ns, keep, "", 0)
	return objs, rev, err
}

// ListPage is List from key start on ("" for the first), at most limit objects (0: no
// limit). next is the key to start the next page at, "" when there is none.
func (s *Store) ListPage(k *Kind, ns string, keep func(Object) bool, start string, limit int) (out []Object, rev int64, next string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		rev = readRev(tx)
		b := tx.Bucket([]byte(k.Bucket))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var prefix []byte
		if ns != "" {
			prefix = []byte(ns + "/")
		}
		from := prefix
		if start > string(prefix) {
			from = []byte(start)
		}
		for kk, v := c.Seek(from); kk != nil && bytes.HasPrefix(kk, prefix); kk, v = c.Next() {
			if limit > 0 && len(out) == limit {
				next = string(kk)
				return nil
			}
			obj, err := s.decode(k, v)
			if err != nil {
				return err
			}
			if keep == nil || keep(obj) {
				out = append(out, obj)
			}
		}
		return nil
	})
	return out, rev, next, err
}

// Floor is the oldest revision watches can resume from: every change after it is kept.
func (s *Store) Floor() int64 {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.floor
}

func put(tx *bolt.Tx, k *Kind, obj Object) error {
	b, err := tx.CreateBucketIfNotExists([]byte(k.Bucket))
	if err != nil {
		return err
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k.Bucket, err)
	}
	return b.Put(key(obj.GetNamespace(), obj.GetName()), data)
}

func setRev(obj Object, rev int64) { obj.SetResourceVersion(strconv.FormatInt(rev, 10)) }

// Create stores a new object. The store sets uid (unless the caller chose one),
// creationTimestamp, generation (1) and resourceVersion; it returns ErrExists when the
// name is taken.
func (s *Store) Create(ctx context.Context, k *Kind, obj Object) (Object, error) {
	obj = obj.DeepCopyObject().(Object)
	if obj.GetUID() == "" {
		obj.SetUID(types.UID(uuid.NewUUID()))
	}
	obj.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	obj.SetGeneration(1)
	obj.SetDeletionTimestamp(nil)
	ev, err := s.submit(ctx, func(t Txn, rev int64) (*Event, error) {
		if get(t.tx, k, obj.GetNamespace(), obj.GetName()) != nil {
			return nil, ErrExists
		}
		if k.OnCreate != nil {
			if err := k.OnCreate(t, obj); err != nil {
				return nil, err
			}
		}
		setRev(obj, rev)
		if err := put(t.tx, k, obj); err != nil {
			return nil, err
		}
		return newEvent(k, Added, obj, nil, rev), nil
	})
	if err != nil {
		return nil, err
	}
	return ev.Object.DeepCopyObject().(Object), nil
}

// UpdateFunc returns the new version of cur (a private copy it may modify).
type UpdateFunc func(cur Object) (Object, error)

// Update reads ns/name, asks fn for its new version and stores it if nothing changed
// it in between, retrying on races. fn runs outside the write transaction; to reject a
// stale write the caller compares resourceVersions in fn and returns ErrConflict.
// An object that is being deleted and has no finalizers left is removed.
func (s *Store) Update(ctx context.Context, k *Kind, ns, name string, fn UpdateFunc) (Object, error) {
	for {
		cur, err := s.Get(k, ns, name)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur.DeepCopyObject().(Object))
		if err != nil {
			return nil, err
		}
		ev, err := s.submit(ctx, func(t Txn, rev int64) (*Event, error) {
			return s.applyUpdate(t, k, cur, next, rev)
		})
		if err == errRetry {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev == nil {
			return cur, nil
		}
		return ev.Object.DeepCopyObject().(Object), nil
	}
}

var errRetry = fmt.Errorf("store: retry: %w", ErrConflict)

func (s *Store) applyUpdate(t Txn, k *Kind, cur, next Object, rev int64) (*Event, error) {
	data := get(t.tx, k, cur.GetNamespace(), cur.GetName())
	if data == nil {
		return nil, ErrNotFound
	}
	var m struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m.Metadata.ResourceVersion != cur.GetResourceVersion() {
		return nil, errRetry
	}
	next = next.DeepCopyObject().(Object)
	// Identity fields belong to the store.
	next.SetUID(cur.GetUID())
	next.SetCreationTimestamp(cur.GetCreationTimestamp())
	next.SetNamespace(cur.GetNamespace())
	next.SetName(cur.GetName())
	if cur.GetDeletionTimestamp() != nil && (next.GetDeletionTimestamp() == nil || cur.GetDeletionTimestamp().Before(next.GetDeletionTimestamp())) {
		next.SetDeletionTimestamp(cur.GetDeletionTimestamp()) // it may move earlier, never away
	}
	// A write that changes nothing is not a write: no new revision, no event.
	next.SetResourceVersion(cur.GetResourceVersion())
	if enc, err := json.Marshal(next); err == nil && bytes.Equal(enc, data) {
		return nil, nil
	}
	if next.GetDeletionTimestamp() != nil && !k.finalizing(next) {
		return s.remove(t, k, next, rev)
	}
	if k.OnUpdate != nil {
		if err := k.OnUpdate(t, next, cur); err != nil {
			return nil, err
		}
	}
	setRev(next, rev)
	if err := put(t.tx, k, next); err != nil {
		return nil, err
	}
	return newEvent(k, Modified, next, cur, rev), nil
}

func (s *Store) remove(t Txn, k *Kind, obj Object, rev int64) (*Event, error) {
	if k.OnDelete != nil {
		if err := k.OnDelete(t, obj); err != nil {
			return nil, err
		}
	}
	if err := t.tx.Bucket([]byte(k.Bucket)).Delete(key(obj.GetNamespace(), obj.GetName())); err != nil {
		return nil, err
	}
	setRev(obj, rev)
	return newEvent(k, Deleted, obj, nil, rev), nil
}

// Preconditions guard a delete.
type Preconditions struct {
	UID             string
	ResourceVersion string
}

// Delete removes ns/name, or, while the kind says it is finalizing, only marks it with a
// deletionTimestamp. It returns the object as last stored and whether it is gone.
func (s *Store) Delete(ctx context.Context, k *Kind, ns, name string, pre Preconditions) (Object, bool, error) {
	ev, err := s.submit(ctx, func(t Txn, rev int64) (*Event, error) {
		data := get(t.tx, k, ns, name)
		if data == nil {
			return nil, ErrNotFound
		}
		cur, err := s.decode(k, data)
		if err != nil {
			return nil, err
		}
		if (pre.UID != "" && pre.UID != string(cur.GetUID())) ||
			(pre.ResourceVersion != "" && pre.ResourceVersion != cur.GetResourceVersion()) {
			return nil, ErrConflict
		}
		if !k.finalizing(cur) {
			return s.remove(t, k, cur, rev)
		}
		if cur.GetDeletionTimestamp() != nil {
			return nil, nil // already marked; nothing changes
		}
		next := cur.DeepCopyObject().(Object)
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		next.SetDeletionTimestamp(&now)
		if k.OnMark != nil {
			k.OnMark(next)
		}
		setRev(next, rev)
		if err := put(t.tx, k, next); err != nil {
			return nil, err
		}
		return newEvent(k, Modified, next, cur, rev), nil
	})
	if err != nil {
		return nil, false, err
	}
	if ev == nil { // already being deleted
		obj, err := s.Get(k, ns, name)
		return obj, false, err
	}
	return ev.Object.DeepCopyObject().(Object), ev.Type == Deleted, nil
}
