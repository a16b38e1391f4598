package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
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

// PrefixSize is the number of usable host addresses in an IPv4 or IPv6 prefix,
// skipping the network address (and broadcast for IPv4), capped at 1<<24.
func PrefixSize(p netip.Prefix) uint64 {
	bits := p.Addr().BitLen() - p.Bits()
	if bits > 24 {
		bits = 24
	}
	n := uint64(1) << bits
	if n <= 2 {
		return 0
	}
	if p.Addr().Is4() {
		return n - 2
	}
	return n - 1
}

// NthAddr returns the address i+1 after the prefix's network address.
func NthAddr(p netip.Prefix, i uint64) netip.Addr {
	a := p.Masked().Addr().As16()
	carry := i + 1
	for j := 15; j >= 0 && carry > 0; j-- {
		sum := uint64(a[j]) + carry
		a[j] = byte(sum)
		carry = sum >> 8
	}
	addr := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return addr.Unmap()
	}
	return addr
}
