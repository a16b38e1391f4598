// Package node is the node agent, the kubelet's role on the one node: it registers the
// Node and keeps its status and lease fresh, and runs every pod bound to it — a sandbox
// (node/sandbox: netns, veth, address, resolv.conf) and its containers (node/runtime),
// restarted with the kubelet's back-off, probed (probes.go), with their postStart and
// preStop hooks (lifecycle.go), stopped within the grace period, and reported in the
// pod's status (status.go) and events. Its sync loop is level-triggered on the shared
// pod informer. It reads and writes the cluster only through client-go; it does not
// schedule (controllers' scheduler binds pods).
package node
