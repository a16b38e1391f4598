// Package index holds what several components need to follow services through shared
// informers: the index of EndpointSlices by the service they belong to, and an event
// handler that names the service of each object delivered. It owns no informers; it
// adds an index to an informer it is given, before that informer starts.
package index

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// ServiceName indexes EndpointSlices by namespace/<kubernetes.io/service-name label>.
const ServiceName = "service-name"

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// AddSlicesByService adds the ServiceName index to an EndpointSlice informer that has
// none yet (components share one informer, and each asks for the index it reads).
func AddSlicesByService(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[ServiceName]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{ServiceName: sliceService}); err != nil {
		return fmt.Errorf("index endpointslices by service: %w", err)
	}
	return nil
}

// SlicesOf returns the EndpointSlices of service ns/name from an indexer with the
// ServiceName index. They are the cache's: callers must not modify them.
func SlicesOf(indexer cache.Indexer, ns, name string) []*discoveryv1.EndpointSlice {
	objs, _ := indexer.ByIndex(ServiceName, ns+"/"+name)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// ServiceOf names the service obj belongs to: a Service itself, an Endpoints by its
// name, an EndpointSlice by its service-name label ("" for anything else).
func ServiceOf(obj any) (namespace, name string) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *corev1.Service:
		return o.Namespace, o.Name
	case *corev1.Endpoints:
		return o.Namespace, o.Name
	case *discoveryv1.EndpointSlice:
		return o.Namespace, o.Labels[discoveryv1.LabelServiceName]
	}
	return "", ""
}

// OnService is an event handler calling f with the service each object delivered
// belongs to, before and after a change (a slice may change hands).
func OnService(f func(namespace, name string)) cache.ResourceEventHandler {
	call := func(obj any) {
		if ns, name := ServiceOf(obj); name != "" {
			f(ns, name)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: call, DeleteFunc: call, UpdateFunc: func(old, obj any) { call(old); call(obj) }}
}
