// Package shim is the container shim, as conmon is for CRI-O: one process per container
// run, started by the runtime in the pod's network namespace and new mount and UTS
// namespaces, in a session of its own so the container outlives the daemon. It prepares
// the container's view of the filesystem, runs the program (built-in images inside
// itself), writes its output as CRI log records, serves attaches on a unix socket, and
// records the exit. It owns the log format and the attach protocol, which the runtime
// reads and speaks. It imports nothing of Kubernetes: the small minicluster-shim binary
// is built from it, so a pod does not pay for the daemon's packages.
package shim
