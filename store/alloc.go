package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// ErrTaken is returned when a requested value is held by another owner.
var ErrTaken = errors.New("already allocated")

// ErrFull is returned when a pool has no free value left.
var ErrFull = errors.New("range is full")

func poolBucket(pool string) []byte { return []byte("alloc/" + pool) }

// Claim records owner as the holder of value in pool. Claiming a value the same owner
// already holds succeeds.
func (t Txn) Claim(pool, value, owner string) error {
	b, err := t.tx.CreateBucketIfNotExists(poolBucket(pool))
	if err != nil {
		return err
	}
	if cur := b.Get([]byte(value)); cur != nil && string(cur) != owner {
		return fmt.Errorf("%s %s: %w", pool, value, ErrTaken)
	}
	return b.Put([]byte(value), []byte(owner))
}

// Release frees value in pool if owner holds it.
func (t Txn) Release(pool, value, owner string) error {
	b := t.tx.Bucket(poolBucket(pool))
	if b == nil {
		return nil
	}
	if cur := b.Get([]byte(value)); cur == nil || string(cur) != owner {
		return nil
	}
	return b.Delete([]byte(value))
}

// Holder returns who holds value in pool, or "".
func (t Txn) Holder(pool, value string) string {
	b := t.tx.Bucket(poolBucket(pool))
	if b == nil {
		return ""
	}
	return string(b.Get([]byte(value)))
}

// ClaimAny claims a free value from candidates (n of them, value(i) giving the i-th),
// starting at a random offset so values are not reused straight away.
func (t Txn) ClaimAny(pool, owner string, n uint64, value func(i uint64) string) (string, error) {
	if n == 0 {
		return "", fmt.Errorf("%s: %w", pool, ErrFull)
	}
	start := rand.Uint64N(n)
	for i := uint64(0); i < n; i++ {
		v := value((start + i) % n)
		if t.Holder(pool, v) == "" {
			return v, t.Claim(pool, v, owner)
		}
	}
	return "", fmt.Errorf("%s: %w", pool, ErrFull)
}
