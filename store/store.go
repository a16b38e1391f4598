package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors returned by the store; callers compare with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("the object has been modified")
	ErrExpired  = errors.New("too old resource version")
	ErrClosed   = errors.New("store closed")
)

var (
	metaBucket = []byte("meta")
	revKey     = []byte("rev")
)

// Config configures a Store.
type Config struct {
	Path string
	// History is how many events the watch hub keeps for resuming watches.
	History int
	Log     *slog.Logger
}

// Store is a bbolt-backed object store with revisions and watches.
type Store struct {
	db     *bolt.DB
	log    *slog.Logger
	hub    *hub
	writes chan *writeOp
	done   chan struct{}
	closed chan struct{}
}

// writeOp runs inside the writer's transaction. It must not write anything when it
// returns an error, unless the error is fatal for the batch (then everything rolls back
// and each op is retried alone).
type writeOp struct {
	apply  func(t Txn, rev int64) (*Event, error)
	result chan writeResult
}

type writeResult struct {
	ev  *Event
	err error
}

// Open opens (creating when missing) the bolt file and starts the writer.
func Open(cfg Config) (*Store, error) {
	if cfg.History <= 0 {
		cfg.History = 10000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	db, err := openChecked(cfg.Path, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, ErrDamaged) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	s := &Store{db: db, log: cfg.Log, writes: make(chan *writeOp, 1024),
		done: make(chan struct{}), closed: make(chan struct{})}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init store: %w", err)
	}
	s.hub = newHub(cfg.History, s.Rev())
	go s.writer()
	return s, nil
}

// Check runs bbolt's consistency check over the whole file (tests run it as they end).
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// Close stops the writer and closes the database. Watches end.
func (s *Store) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
	}
	close(s.closed)
	<-s.done
	s.hub.closeAll()
	return s.db.Close()
}

// Rev returns the current global revision.
func (s *Store) Rev() int64 {
	var rev int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		rev = readRev(tx)
		return nil
	})
	return rev
}

func readRev(tx *bolt.Tx) int64 {
	b := tx.Bucket(metaBucket).Get(revKey)
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func writeRev(tx *bolt.Tx, rev int64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return tx.Bucket(metaBucket).Put(revKey, b[:])
}

// submit queues op for the writer and waits for its result.
func (s *Store) submit(ctx context.Context, apply func(Txn, int64) (*Event, error)) (*Event, error) {
	op := &writeOp{apply: apply, result: make(chan writeResult, 1)}
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case s.writes <- op:
	case <-s.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued the write will be decided; wait for it so an acknowledged write is
	// never reported as failed. If the writer has exited, it answered every op it saw.
	select {
	case r := <-op.result:
		return r.ev, r.err
	case <-s.done:
		select {
		case r := <-op.result:
			return r.ev, r.err
		default:
			return nil, ErrClosed
		}
	}
}

// writer drains queued writes and commits each batch in one transaction.
func (s *Store) writer() {
	defer close(s.done)
	for {
		var batch []*writeOp
		select {
		case op := <-s.writes:
			batch = append(batch, op)
		case <-s.closed:
			s.failQueued()
			return
		}
	drain:
		for len(batch) < 1000 {
			select {
			case op := <-s.writes:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *Store) failQueued() {
	for {
		select {
		case op := <-s.writes:
			op.result <- writeResult{err: ErrClosed}
		default:
			return
		}
	}
}

// commit applies a batch in one transaction. If any op fails, the transaction is rolled
// back (an op may have written before failing) and every op runs in a transaction of
// its own, so one bad write never takes others down with it.
func (s *Store) commit(batch []*writeOp) {
	results, err := s.runTx(batch)
	if err != nil && len(batch) > 1 {
		for _, op := range batch {
			s.commit([]*writeOp{op})
		}
		return
	}
	if err != nil {
		results = []writeResult{{err: err}}
	}
	var evs []*Event
	for _, r := range results {
		if r.ev != nil {
			evs = append(evs, r.ev)
		}
	}
	s.hub.publish(evs)
	for i, op := range batch {
		op.result <- results[i]
	}
}

func (s *Store) runTx(batch []*writeOp) ([]writeResult, error) {
	results := make([]writeResult, len(batch))
	err := s.db.Update(func(tx *bolt.Tx) error {
		rev := readRev(tx)
		for i, op := range batch {
			ev, err := op.apply(Txn{tx: tx}, rev+1)
			if err != nil {
				return err
			}
			if ev != nil {
				rev++
			}
			results[i] = writeResult{ev: ev}
		}
		return writeRev(tx, rev)
	})
	return results, err
}
