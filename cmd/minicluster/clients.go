package main

import (
	"context"
	"net"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/minicluster/minicluster/apiserver"
)

// clients are how the daemon's components reach the API: client-go over the root-only
// unix socket, as any other client does, in protobuf (JSON for the dynamic client).
type clients struct {
	typed     kubernetes.Interface
	dynamic   dynamic.Interface
	informers informers.SharedInformerFactory
}

// newClients builds the clients; nothing connects before the first request.
func newClients(socket string) (*clients, error) {
	cfg := &rest.Config{
		Host: "http://localhost",
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		UserAgent: "minicluster/" + apiserver.Version,
		QPS:       -1, // no client-side rate limit: the components are the server's own
	}
	typedCfg := rest.CopyConfig(cfg)
	typedCfg.ContentType = runtime.ContentTypeProtobuf
	typedCfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	typed, err := kubernetes.NewForConfig(typedCfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{typed: typed, dynamic: dyn, informers: informers.NewSharedInformerFactory(typed, 0)}, nil
}
