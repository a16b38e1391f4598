//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BenchmarkImagePull: pull and unpack of a 100 MiB image (4 layers of 25 MiB of random
// bytes, gzipped) from a registry in the node's network namespace, by
// `minicluster images pull` into a fresh store, against what `crane pull` does (crane's
// Pull and Save: download, verify, write a tarball, no unpack), interleaved in one run.
//
//	go test -tags integration -run '^$' -bench ImagePull -benchtime 5x ./integration/
func BenchmarkImagePull(b *testing.B) {
	n := newNode(b) // no daemon: the CLI works on a data dir
	reg := n.registryInNetns(b)
	const layers, layerSize = 4, 25 << 20
	var ls []v1.Layer
	for i := range layers {
		data := make([]byte, layerSize)
		rand.Read(data)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d", i), Mode: 0o644, Size: layerSize, Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
		if err != nil {
			b.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		b.Fatal(err)
	}
	ref := reg + "/bench/big:1"
	n.pushFromNetns(b, ref, img)
	size := float64(layers*layerSize) / (1 << 20)

	var ours, cranes []time.Duration
	transport := &http.Transport{DialContext: n.dialInNetns}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dataDir := b.TempDir()
		os.Chmod(dataDir, 0o700)
		start := time.Now()
		if out, errOut, err := n.exec(binary, "images", "--data-dir", dataDir, "pull", "--insecure", ref); err != nil {
			b.Fatalf("minicluster images pull: %v\n%s%s", err, out, errOut)
		}
		ours = append(ours, time.Since(start))
		if fi, err := os.Stat(filepath.Join(dataDir, "images")); err != nil || !fi.IsDir() {
			b.Fatalf("no image store after the pull: %v", err)
		}
		os.RemoveAll(dataDir)

		out := filepath.Join(b.TempDir(), "big.tar")
		start = time.Now()
		opts := []crane.Option{crane.Insecure, crane.WithTransport(transport), crane.WithAuth(&authn.Basic{Username: "user", Password: "pass"})}
		pulled, err := crane.Pull(ref, opts...)
		if err == nil {
			err = crane.Save(pulled, ref, out)
		}
		if err != nil {
			b.Fatalf("crane pull: %v", err)
		}
		cranes = append(cranes, time.Since(start))
		os.Remove(out)
	}
	b.StopTimer()
	ourP50, craneP50 := percentile(ours, 0.5), percentile(cranes, 0.5)
	b.ReportMetric(size/ourP50.Seconds(), "minicluster-MiB/s")
	b.ReportMetric(size/craneP50.Seconds(), "crane-MiB/s")
	b.ReportMetric(ourP50.Seconds()/craneP50.Seconds(), "time-ratio")
}
