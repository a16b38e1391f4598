// Package proxy will program the kernel so that traffic to a ClusterIP reaches a ready
// endpoint (issue 5): it builds the desired ruleset as data from services and
// endpointslices and applies it atomically through iptables-restore or nft. It reads
// the API only through list and watch, and owns every rule carrying the instance name.
package proxy
