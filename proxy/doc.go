// Package proxy is kube-proxy's role: from the shared informers of services and
// endpointslices it builds the desired ruleset as data, per service, and applies the
// difference atomically through iptables-restore or nft, so traffic to a ClusterIP,
// NodePort or external IP reaches a ready endpoint (and a service without one is
// refused at once). It owns every rule carrying the instance name, repairs what is
// removed behind its back, and reads the cluster only through client-go informers.
package proxy
