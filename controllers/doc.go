// Package controllers holds the level-triggered reconcilers that keep the cluster's
// objects consistent, as kube-controller-manager's do: deployments, replicasets,
// endpoints, endpointslices (and their mirroring), garbage collection, namespace
// lifecycle, and the scheduler's binding of pods to the node; plus the event
// broadcaster they and the node agent record through. Each reads shared informers'
// caches, writes through client-go, and never touches the store or the kernel.
package controllers
