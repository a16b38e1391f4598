package node

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The atomic writer: files appear through ..data, an unchanged set is left alone, a
// changed one is swapped in whole, names no longer there go, and paths cannot climb out.
func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(data)
	}
	if err := writeAtomic(dir, map[string]file{"a": {[]byte("1"), 0o644}, "sub/b": {[]byte("2"), 0o600}}); err != nil {
		t.Fatal(err)
	}
	first, _ := os.Readlink(filepath.Join(dir, dataDir))
	if read("a") != "1" || read("sub/b") != "2" || first == "" {
		t.Fatalf("after the first write: a=%q sub/b=%q ..data=%q", read("a"), read("sub/b"), first)
	}
	if link, _ := os.Readlink(filepath.Join(dir, "a")); link != "..data/a" {
		t.Errorf("a is not a link through ..data: %q", link)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sub/b")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of sub/b: %v", fi)
	}
	writeAtomic(dir, map[string]file{"a": {[]byte("1"), 0o644}, "sub/b": {[]byte("2"), 0o600}})
	if again, _ := os.Readlink(filepath.Join(dir, dataDir)); again != first {
		t.Errorf("an unchanged set was rewritten: %s → %s", first, again)
	}
	if err := writeAtomic(dir, map[string]file{"a": {[]byte("3"), 0o644}}); err != nil {
		t.Fatal(err)
	}
	if read("a") != "3" {
		t.Errorf("a after the update: %q", read("a"))
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); err == nil {
		t.Errorf("sub outlived its key")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); err == nil {
		t.Errorf("the old timestamped directory %s stays", first)
	}
	for _, bad := range []string{"../x", "/abs", "a/../../x", "..data"} {
		if err := writeAtomic(dir, map[string]file{bad: {[]byte("x"), 0o644}}); err == nil {
			t.Errorf("path %q was accepted", bad)
		}
	}
}

func TestDownwardAPIValues(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"b": "2", "a": "x\"y"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}}}}}
	if got, _ := downwardField(pod, "metadata.labels"); got != "a=\"x\\\"y\"\nb=\"2\"" {
		t.Errorf("labels: %q", got)
	}
	for _, c := range []struct {
		resource, divisor, want string
	}{
		{"limits.cpu", "", "1"}, {"limits.cpu", "1m", "250"}, {"limits.memory", "1Mi", "64"},
		{"requests.memory", "", "33554432"}, {"requests.cpu", "", "0"},
	} {
		ref := &corev1.ResourceFieldSelector{ContainerName: "c", Resource: c.resource}
		if c.divisor != "" {
			ref.Divisor = resource.MustParse(c.divisor)
		}
		if got, err := resourceValue(pod, ref); err != nil || got != c.want {
			t.Errorf("%s/%s: %q %v, want %s", c.resource, c.divisor, got, err, c.want)
		}
	}
}
