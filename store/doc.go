// Package store keeps API objects in bbolt.
//
// It owns the on-disk format, the global revision (every write bumps it; it is the
// objects' resourceVersion), optimistic concurrency, finalizer-aware deletion, the
// allocation pools (ClusterIP, NodePort) and the watch hub that fans committed changes
// out to watchers. It knows nothing of HTTP, validation or defaulting: those belong to
// apiserver, which passes per-kind hooks in a Kind. Only apiserver (and cmd, which
// opens it) imports it.
//
// Writes go through one writer goroutine that commits every queued write in a single
// bolt transaction (group commit) and publishes the resulting events in revision order
// after the commit. bbolt's own Batch is not used: it delays a lone writer by
// MaxBatchDelay and its callers publish after commit in no particular order, which
// would break the watch contract (events strictly ordered by revision).
package store
