// Package node is the node agent (the kubelet's role): it registers the Node, sets up
// the node bridge, and gives every pod bound to this node a network namespace with a
// veth on the bridge and an IP from the pod CIDR, plus the resolv.conf its dnsPolicy asks
// for. Everything it creates in the kernel carries the instance name, so it can adopt it
// after a restart and remove it on cleanup. It reads and writes the cluster only through
// the apiserver's in-process API.
//
// Container processes, probes, logs and graceful termination are not here yet (issue 4
// continues); pods get their sandbox and IP and stay Pending with ContainerCreating.
package node
