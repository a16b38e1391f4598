// Package controllers holds the level-triggered reconcilers that keep the cluster's
// objects consistent: namespace lifecycle now; deployments, replicasets, endpoints,
// endpointslices and garbage collection as they arrive. Each meets the rest of the
// system only through the apiserver's in-process API (list, watch, writes); none
// touches the store or the kernel directly.
package controllers
