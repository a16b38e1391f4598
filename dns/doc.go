// Package dns serves cluster DNS per the Kubernetes DNS specification: answers for
// services, headless endpoints, pods' hostnames and reverse names, computed from an
// in-memory index over the shared informers of services, endpointslices and
// namespaces (never the store on the query path), and names outside the zone forwarded
// upstream for pods only. It publishes its own address as kube-dns's endpoint.
package dns
