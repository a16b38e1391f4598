package apiserver

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

func protobufPod(t *testing.T, name string) []byte {
	t.Helper()
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	var buf bytes.Buffer
	if err := pbSerializer.Encode(p, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestProtobufBodiesAndResponses(t *testing.T) {
	s := newTestServer(t)
	watch, err := http.NewRequest("GET", s.url+podsPath+"?watch=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	watch.Header.Set("Accept", protobufType)
	wresp, err := http.DefaultClient.Do(watch)
	if err != nil {
		t.Fatal(err)
	}
	defer wresp.Body.Close()
	if ct := wresp.Header.Get("Content-Type"); ct != protobufType+";stream=watch" {
		t.Errorf("watch content type %q", ct)
	}

	r := s.do(t, "POST", podsPath, protobufType, string(protobufPod(t, "pb")), "Accept", protobufType)
	if r.code != 201 || r.header.Get("Content-Type") != protobufType {
		t.Fatalf("create from protobuf: %d %s %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	var created corev1.Pod
	if _, _, err := pbSerializer.Decode(r.body, nil, &created); err != nil || created.Name != "pb" || created.UID == "" || created.Spec.DNSPolicy != "ClusterFirst" {
		t.Fatalf("protobuf response: %v %+v", err, created.ObjectMeta)
	}
	r = s.do(t, "GET", podsPath, "", "", "Accept", protobufType+", application/json")
	var list corev1.PodList
	if _, _, err := pbSerializer.Decode(r.body, nil, &list); err != nil || len(list.Items) != 1 || list.ResourceVersion == "" {
		t.Errorf("protobuf list: %v %d", err, len(list.Items))
	}
	if r := s.do(t, "GET", podsPath+"/pb", "", "", "Accept", "application/json, "+protobufType); r.object()["kind"] != "Pod" {
		t.Errorf("JSON first in Accept must get JSON: %s", r.body)
	}
	svc := s.do(t, "POST", podsPath, protobufType, string(protobufPod(t, "x"))[:20])
	if svc.code != 400 {
		t.Errorf("truncated protobuf: %d", svc.code)
	}

	frames := protobuf.LengthDelimitedFramer.NewFrameReader(wresp.Body)
	buf := make([]byte, 1<<20)
	n, err := frames.Read(buf)
	if err != nil && err != io.ErrShortBuffer {
		t.Fatal(err)
	}
	var ev metav1.WatchEvent
	if _, _, err := pbRaw.Decode(buf[:n], nil, &ev); err != nil {
		t.Fatalf("watch frame: %v", err)
	}
	var p corev1.Pod
	if _, _, err := pbSerializer.Decode(ev.Object.Raw, nil, &p); err != nil || ev.Type != "ADDED" || p.Name != "pb" {
		t.Errorf("watch event %s %q: %v", ev.Type, p.Name, err)
	}
}

// client-go puts a Scale as protobuf (kubectl scale, the e2e suite's scale subresource specs).
func TestProtobufScale(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(t, "POST", "/apis/apps/v1/namespaces/default/deployments", jsonCT, deployJSON); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	sc := &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
	var buf bytes.Buffer
	if err := pbSerializer.Encode(sc, &buf); err != nil {
		t.Fatal(err)
	}
	r := s.do(t, "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", protobufType, buf.String())
	if r.code != 200 || get(r.object(), "spec", "replicas") != 5.0 {
		t.Fatalf("put scale: %d %s", r.code, r.body)
	}
	if r := s.do(t, "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", protobufType, buf.String()[:10]); r.code != 400 {
		t.Errorf("truncated protobuf scale: %d %s", r.code, r.body)
	}
}
