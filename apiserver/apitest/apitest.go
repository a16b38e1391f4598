// Package apitest gives tests of other packages a booted in-process API over a real
// bbolt store in a temporary directory.
package apitest

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// NewServer opens a store and boots an API server over it (no listener); both close
// when the test ends.
func NewServer(t testing.TB) *apiserver.Server {
	t.Helper()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Check(); err != nil {
			t.Errorf("bbolt consistency: %v", err)
		}
		st.Close()
	})
	srv, err := apiserver.New(apiserver.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:6443",
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), ClusterDomain: "cluster.local", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv
}

// NewAPI is NewServer's API.
func NewAPI(t testing.TB) *apiserver.API { return NewServer(t).API() }
