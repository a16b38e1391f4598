package node

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// The gRPC probe against grpc-go's own health server (as agnhost grpc-health-checking
// and etcd serve it): SERVING passes, NOT_SERVING and unknown services fail, a server
// without the health service and a closed port fail with the kubelet's words.
func TestGRPCProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("ok", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	defer srv.Stop()
	bare, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bareSrv := grpc.NewServer()
	go bareSrv.Serve(bare)
	defer bareSrv.Stop()
	port := func(l net.Listener) int32 {
		p, _ := strconv.Atoi(l.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):])
		return int32(p)
	}
	for _, c := range []struct {
		port    int32
		service *string
		want    string // "" passes, else in the error
	}{
		{port(ln), nil, ""}, // the server as a whole
		{port(ln), ptr.To("ok"), ""},
		{port(ln), ptr.To("down"), `service unhealthy (responded with "NOT_SERVING")`},
		{port(ln), ptr.To("nope"), "code = 5"},
		{port(bare), nil, "does not implement the grpc health protocol"},
		{1, nil, "failed to connect service"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := grpcProbe(ctx, "127.0.0.1", &corev1.GRPCAction{Port: c.port, Service: c.service})
		cancel()
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("port %d service %v: %v, want %q", c.port, ptr.Deref(c.service, ""), err, c.want)
		}
	}
}
