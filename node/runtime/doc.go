// Package runtime runs containers for the node agent, as a CRI runtime with conmon
// would: each run in a shim of its own (this binary, `minicluster shim`) inside its
// pod's network namespace and new mount and UTS namespaces, in a session of its own so
// it outlives the daemon; images from the offline catalog (built-in agnhost and pause,
// the host's programs, images.yaml); logs in CRI format; exec, attach and
// port-forward's streams. Container records live on disk under the data dir, so a
// restarted daemon adopts running containers. It knows nothing of the API.
package runtime
