package store

import (
	"context"
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
)

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
