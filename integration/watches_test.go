//go:build integration

package integration

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// The daemon's components share one informer per kind: the API server counts one open
// watch per resource kind (the garbage collector watches every kind), never two.
func TestOneWatchPerKind(t *testing.T) {
	n := newNode(t)
	n.start()
	sample := regexp.MustCompile(`(?m)^apiserver_longrunning_requests\{group="([^"]*)",resource="([^"]+)",scope="[^"]+",verb="WATCH",version="[^"]+"\} (\d+)$`)
	watches := map[string]int{}
	// Every kind is watched once the garbage collector has discovered them all.
	want := []string{"deployments.apps", "endpoints", "endpointslices.discovery.k8s.io", "events", "leases.coordination.k8s.io",
		"namespaces", "nodes", "pods", "replicasets.apps", "services"}
	eventually(t, 20*time.Second, func() error {
		resp, err := n.socketClient().Get("http://x/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		clear(watches)
		for _, m := range sample.FindAllStringSubmatch(string(body), -1) {
			k := m[2]
			if m[1] != "" {
				k += "." + m[1]
			}
			v, _ := strconv.Atoi(m[3])
			watches[k] += v
		}
		for _, k := range want {
			if watches[k] == 0 {
				return fmt.Errorf("no watch of %s yet: %v", k, watches)
			}
		}
		return nil
	})
	for k, v := range watches {
		if v > 1 {
			t.Errorf("%d watches of %s, want one shared by every component", v, k)
		}
	}
	t.Logf("watches: %v", watches)
}
