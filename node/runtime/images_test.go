package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func testCatalog(t *testing.T, file string) *catalog {
	t.Helper()
	c, err := newCatalog("/usr/bin/minicluster", file)
	if err != nil {
		t.Fatal(err)
	}
	c.lookPath = func(p string) (string, error) {
		switch p {
		case "busybox":
			return "/usr/bin/busybox", nil
		case "/usr/bin/minicluster", "/opt/app":
			return p, nil
		case "nginx":
			return "/usr/sbin/nginx", nil
		}
		return "", errors.New("not found")
	}
	return c
}

func TestImageName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox": "busybox", "busybox:1.36": "busybox", "docker.io/library/busybox:1.36": "busybox",
		"registry.k8s.io/e2e-test-images/agnhost:2.53": "registry.k8s.io/e2e-test-images/agnhost",
		"localhost:5000/app":                           "localhost:5000/app", "nginx@sha256:abc": "nginx",
	} {
		if got := ImageName(in); got != want {
			t.Errorf("ImageName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	file := filepath.Join(t.TempDir(), "images.yaml")
	os.WriteFile(file, []byte("images:\n  example.com/app:v1: {entrypoint: [/opt/app], cmd: [--port=80]}\n"), 0o600)
	c := testCatalog(t, file)
	agnhost := "registry.k8s.io/e2e-test-images/agnhost:2.53"
	tests := []struct {
		name    string
		ctr     corev1.Container
		want    string
		wantErr string
	}{
		{"agnhost args", corev1.Container{Image: agnhost, Args: []string{"netexec", "--http-port=8080"}}, "/usr/bin/minicluster agnhost netexec --http-port=8080", ""},
		{"agnhost default", corev1.Container{Image: agnhost}, "/usr/bin/minicluster agnhost pause", ""},
		{"agnhost command by its image path", corev1.Container{Image: agnhost, Command: []string{"/agnhost", "serve-hostname"}}, "/usr/bin/minicluster agnhost serve-hostname", ""},
		{"pause", corev1.Container{Image: "registry.k8s.io/pause:3.10"}, "/usr/bin/minicluster pause", ""},
		{"busybox default shell", corev1.Container{Image: "busybox:1.36"}, "/usr/bin/busybox sh", ""},
		{"busybox command picks the applet", corev1.Container{Image: "busybox", Command: []string{"/bin/sh", "-c", "echo hi"}}, "/usr/bin/busybox sh -c echo hi", ""},
		{"busybox args replace CMD", corev1.Container{Image: "busybox", Args: []string{"sleep", "3600"}}, "/usr/bin/busybox sleep 3600", ""},
		{"catalog file", corev1.Container{Image: "example.com/app:v1"}, "/opt/app --port=80", ""},
		{"nginx", corev1.Container{Image: "nginx:1.27"}, "/usr/sbin/nginx -g daemon off;", ""},
		{"command drops CMD", corev1.Container{Image: "example.com/app:v1", Command: []string{"/opt/app"}}, "/opt/app", ""},
		{"not in the catalog (the image store's)", corev1.Container{Image: "ghcr.io/acme/app:1"}, "", "is not in the catalog"},
		{"command not installed", corev1.Container{Image: "example.com/app:v1", Command: []string{"redis-server"}}, "", `command "redis-server" is not installed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv, err := c.resolve(&tt.ctr)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrImageUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(argv, " ") != tt.want {
				t.Errorf("argv %q (%v), want %q", argv, err, tt.want)
			}
		})
	}
}
