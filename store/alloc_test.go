package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestPrefixMath(t *testing.T) {
	tests := []struct {
		prefix string
		size   uint64
		nth    uint64
		addr   string
	}{
		{"10.96.0.0/12", 1<<20 - 2, 0, "10.96.0.1"},
		{"10.96.0.0/12", 1<<20 - 2, 255, "10.96.1.0"},
		{"10.244.0.0/24", 254, 253, "10.244.0.254"},
		{"192.168.0.0/30", 2, 1, "192.168.0.2"},
		{"10.0.0.0/31", 0, 0, "10.0.0.1"},
		{"fd00::/120", 255, 0, "fd00::1"},
		{"10.0.0.0/8", 1<<24 - 2, 0, "10.0.0.1"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.prefix)
		if got := PrefixSize(p); got != tt.size {
			t.Errorf("PrefixSize(%s) = %d, want %d", tt.prefix, got, tt.size)
		}
		if got := NthAddr(p, tt.nth).String(); got != tt.addr {
			t.Errorf("NthAddr(%s, %d) = %s, want %s", tt.prefix, tt.nth, got, tt.addr)
		}
	}
}

func TestClaimReleaseAndFull(t *testing.T) {
	s := openStore(t, "")
	op := func(fn func(Txn) error) error {
		_, err := s.submit(context.Background(), func(tx Txn, rev int64) (*Event, error) { return nil, fn(tx) })
		return err
	}
	var got []string
	for i := 0; i < 3; i++ {
		if err := op(func(tx Txn) error {
			v, err := tx.ClaimAny("p", "owner", 3, func(i uint64) string { return string(rune('a' + i)) })
			got = append(got, v)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Errorf("ClaimAny handed out a value twice: %v", got)
	}
	err := op(func(tx Txn) error {
		_, err := tx.ClaimAny("p", "owner", 3, func(i uint64) string { return string(rune('a' + i)) })
		return err
	})
	if !errors.Is(err, ErrFull) {
		t.Errorf("claim from a full pool: %v", err)
	}
	if err := op(func(tx Txn) error { return tx.Claim("p", "a", "someone-else") }); !errors.Is(err, ErrTaken) {
		t.Errorf("claim of a held value: %v", err)
	}
	op(func(tx Txn) error { return tx.Release("p", "a", "someone-else") }) // not the holder: no effect
	op(func(tx Txn) error { return tx.Release("p", "b", "owner") })
	s.db.View(func(tx *bolt.Tx) error {
		txn := Txn{tx: tx}
		if txn.Holder("p", "a") != "owner" || txn.Holder("p", "b") != "" {
			t.Errorf("holders after release: a=%q b=%q", txn.Holder("p", "a"), txn.Holder("p", "b"))
		}
		return nil
	})
}
