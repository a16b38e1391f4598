// Package integration holds end-to-end tests that run the real minicluster binary as
// root inside a private network namespace with a temporary data dir, and drive it with
// real clients (curl, kubectl, the minicluster CLI). They are built only with the
// "integration" tag: go test -tags integration ./integration/
package integration
