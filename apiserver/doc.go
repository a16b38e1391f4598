// Package apiserver serves the Kubernetes-style REST API: one registry table of
// resources, generic handlers for every verb, defaulting and validation, ClusterIP and
// NodePort allocation, watches, server-side Tables, discovery, authentication and the
// boot objects. It persists through store and never touches the kernel.
package apiserver
