package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// Nothing is pulled: an image names something this host can run. The catalog maps
// image names to an ENTRYPOINT and CMD, and the container's command/args apply on top
// as in Kubernetes (command replaces ENTRYPOINT and drops CMD; args replace CMD).

// ErrImageUnavailable means an image cannot be run on this host.
var ErrImageUnavailable = errors.New("image not available on this host")

// imageSpec is what an image means here.
type imageSpec struct {
	Entrypoint []string `yaml:"entrypoint"`
	Cmd        []string `yaml:"cmd"`
	// busybox images run the host's busybox; the program named picks the applet.
	busybox bool
}

type catalog struct {
	images   map[string]imageSpec
	file     string
	lookPath func(string) (string, error)
}

// Built-in images: served by the minicluster binary itself (self), or host programs.
func builtinImages(self string) map[string]imageSpec {
	return map[string]imageSpec{
		"registry.k8s.io/pause":                   {Entrypoint: []string{self, "pause"}},
		"k8s.gcr.io/pause":                        {Entrypoint: []string{self, "pause"}},
		"registry.k8s.io/e2e-test-images/agnhost": {Entrypoint: []string{self, "agnhost"}, Cmd: []string{"pause"}},
		"busybox": {Cmd: []string{"sh"}, busybox: true},
		// Kubernetes' e2e images that the host's programs stand in for: its busybox,
		// and a shell with dig and nslookup (Debian's dnsutils) for jessie-dnsutils.
		"registry.k8s.io/e2e-test-images/busybox":         {Cmd: []string{"sh"}, busybox: true},
		"registry.k8s.io/e2e-test-images/jessie-dnsutils": {Cmd: []string{"sh"}},
		"registry.k8s.io/e2e-test-images/nginx":           {Entrypoint: []string{"nginx"}, Cmd: []string{"-g", "daemon off;"}},
		// The host's nginx with its stock welcome page; its pid file lands in the pod's
		// private /run, so every pod runs its own.
		"nginx": {Entrypoint: []string{"nginx"}, Cmd: []string{"-g", "daemon off;"}},
	}
}

// newCatalog loads the built-in images and, when present, the file (YAML: a map
// "images" of name → {entrypoint, cmd}) that adds or overrides them.
func newCatalog(self, file string) (*catalog, error) {
	c := &catalog{images: builtinImages(self), file: file, lookPath: exec.LookPath}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var doc struct {
		Images map[string]imageSpec `yaml:"images"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for name, spec := range doc.Images {
		c.images[ImageName(name)] = spec
	}
	return c, nil
}

// ImageName drops the tag or digest and Docker Hub's implicit prefixes:
// "docker.io/library/busybox:1.36" → "busybox".
func ImageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "library/", "docker.io/"} {
		image = strings.TrimPrefix(image, p)
	}
	return image
}

// resolve returns the argv a container of a catalog image runs (other images are the
// image store's).
func (c *catalog) resolve(ctr *corev1.Container) ([]string, error) {
	spec, known := c.images[ImageName(ctr.Image)]
	if !known {
		return nil, fmt.Errorf("%w: %q is not in the catalog (%s)", ErrImageUnavailable, ctr.Image, c.file)
	}
	entry, cmd := spec.Entrypoint, spec.Cmd
	if len(ctr.Command) > 0 {
		entry, cmd = ctr.Command, nil
		// An image's own program named by its path inside the image (/agnhost) is the built-in.
		if len(spec.Entrypoint) > 0 && filepath.Base(ctr.Command[0]) == filepath.Base(spec.Entrypoint[len(spec.Entrypoint)-1]) {
			entry = append(append([]string{}, spec.Entrypoint...), ctr.Command[1:]...)
		}
	}
	if len(ctr.Args) > 0 {
		cmd = ctr.Args
	}
	argv := append(append([]string{}, entry...), cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: %q has no command and the image none either", ErrImageUnavailable, ctr.Image)
	}
	if spec.busybox {
		bb, err := c.lookPath("busybox")
		if err != nil {
			return nil, fmt.Errorf("%w: %q runs the host's busybox, which is not installed (apt-get install busybox)", ErrImageUnavailable, ctr.Image)
		}
		return append([]string{bb, filepath.Base(argv[0])}, argv[1:]...), nil
	}
	path, err := c.lookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %q: command %q is not installed on this host", ErrImageUnavailable, ctr.Image, argv[0])
	}
	argv[0] = path
	return argv, nil
}
