// Package dns will serve cluster DNS per the Kubernetes DNS specification (issue 6),
// answering from an in-memory index fed by watches of services, endpointslices, pods
// and namespaces, and forwarding other names upstream. It never reads the store on the
// query path.
package dns
