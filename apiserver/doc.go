// Package apiserver serves the Kubernetes-style REST API: routes laid out as
// kube-apiserver's (chi), one registry table of resources, generic handlers for every
// verb, defaulting and validation, ClusterIP and NodePort allocation, watches,
// server-side Tables, discovery and OpenAPI, authentication, the boot objects, and the
// pod subresources it hands to the node agent (log, exec, attach, portforward) or
// proxies (proxy). It persists through store and never touches the kernel; every other
// component reaches it only over HTTP, through client-go.
package apiserver
