package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"

	"github.com/minicluster/minicluster/node/images"
	"github.com/minicluster/minicluster/node/runtime/shim"
)

// Image pull errors, as the kubelet reports them in a container's waiting state.
var (
	errImagePull      = errors.New("ErrImagePull")
	errImagePullBack  = errors.New("ImagePullBackOff")
	errImageNeverPull = errors.New("ErrImageNeverPull")
)

// pullState is a container's failed pulls: the next is not tried before next.
type pullState struct {
	failures int
	next     time.Time
}

// ensureImage makes a container's image present as its pull policy says (Always: ask
// the registry; IfNotPresent: only when the store lacks it; Never: never), reporting as
// the kubelet does, with back-off after failures (10 s doubling to 5 min).
func (a *Agent) ensureImage(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) (*images.Image, error) {
	store := a.rt.Images()
	have, present := store.Get(ctr.Image)
	policy := ctr.ImagePullPolicy
	if policy == corev1.PullNever || policy == corev1.PullIfNotPresent && present {
		if !present {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", ctr.Image)
			a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			return nil, fmt.Errorf("%w: %s", errImageNeverPull, msg)
		}
		a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", ctr.Image)
		return have, nil
	}
	k := string(pod.UID) + "/" + ctr.Name
	if v, ok := a.pulls.Load(k); ok && time.Now().Before(v.(pullState).next) {
		msg := fmt.Sprintf("Back-off pulling image %q", ctr.Image)
		a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "BackOff", "%s", msg)
		return nil, fmt.Errorf("%w: %s", errImagePullBack, msg)
	}
	a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Pulling", "Pulling image %q", ctr.Image)
	start := time.Now()
	img, err := store.Pull(ctx, ctr.Image, a.pullSecrets(pod))
	if err != nil {
		st := pullState{failures: 1}
		if v, ok := a.pulls.Load(k); ok {
			st.failures = v.(pullState).failures + 1
		}
		st.next = time.Now().Add(backoff(int32(st.failures)))
		a.pulls.Store(k, st)
		msg := fmt.Sprintf("Failed to pull image %q: %v", ctr.Image, err)
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "%s", msg)
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		return nil, fmt.Errorf("%w: %s", errImagePull, msg)
	}
	a.pulls.Delete(k)
	d := time.Since(start).Round(time.Millisecond)
	a.containerEvent(pod, ctr.Name, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s (%s including waiting). Image size: %d bytes.",
		ctr.Image, d, d, img.Size)
	return img, nil
}

// pullSecrets is a keychain of the pod's imagePullSecrets (kubernetes.io/dockerconfigjson
// and kubernetes.io/dockercfg), anonymous for registries they do not name.
func (a *Agent) pullSecrets(pod *corev1.Pod) authn.Keychain {
	kc := registryKeychain{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := a.secrets.Secrets(pod.Namespace).Get(ref.Name)
		if err != nil {
			continue // as the kubelet: a missing pull secret is skipped
		}
		var auths map[string]authn.AuthConfig
		switch s.Type {
		case corev1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]authn.AuthConfig `json:"auths"`
			}
			if json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg) == nil {
				auths = cfg.Auths
			}
		case corev1.SecretTypeDockercfg:
			json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths)
		}
		for host, cfg := range auths {
			h := registryHost(host)
			if _, seen := kc[h]; !seen {
				kc[h] = cfg
			}
		}
	}
	return kc
}

// registryKeychain answers credentials by registry host.
type registryKeychain map[string]authn.AuthConfig

func (k registryKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if cfg, ok := k[registryHost(r.RegistryStr())]; ok {
		return authn.FromConfig(cfg), nil
	}
	return authn.Anonymous, nil
}

// registryHost is a docker config key as a host: "https://index.docker.io/v1/" → "index.docker.io".
func registryHost(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	if s == "docker.io" || s == "registry-1.docker.io" {
		return "index.docker.io"
	}
	return s
}

// imageArgv is what a container of a stored image runs, as Kubernetes composes it:
// command replaces the entrypoint (and drops the image's cmd), args replace the cmd.
func imageArgv(img *images.Image, ctr *corev1.Container) ([]string, error) {
	entry, cmd := img.Config.Entrypoint, img.Config.Cmd
	if len(ctr.Command) > 0 {
		entry, cmd = ctr.Command, nil
	}
	if len(ctr.Args) > 0 {
		cmd = ctr.Args
	}
	argv := append(append([]string{}, entry...), cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: image %q has no entrypoint or cmd, and the container no command", ErrContainerConfig, ctr.Image)
	}
	return argv, nil
}

// imageUser is the image's USER ("uid[:gid]", or names looked up in the image's
// /etc/passwd and /etc/group), for a container whose securityContext names none.
func imageUser(rootfs, user string) (*shim.User, error) {
	if user == "" || user == "root" || user == "0" {
		return nil, nil
	}
	name, group, _ := strings.Cut(user, ":")
	uid, gid, err := lookupID(filepath.Join(rootfs, "etc/passwd"), name)
	if err != nil {
		return nil, err
	}
	if group != "" {
		if gid, _, err = lookupID(filepath.Join(rootfs, "etc/group"), group); err != nil {
			return nil, err
		}
	}
	return &shim.User{UID: uid, GID: gid}, nil
}

// lookupID finds name (or a number) in a passwd or group file: its id, and for passwd
// its primary group.
func lookupID(file, name string) (uint32, uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), uint32(n), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: unable to find user %s: no %s in the image", ErrContainerConfig, name, filepath.Base(file))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			id, _ := strconv.ParseUint(fields[2], 10, 32)
			gid := id
			if len(fields) >= 4 {
				gid, _ = strconv.ParseUint(fields[3], 10, 32)
			}
			return uint32(id), uint32(gid), nil
		}
	}
	return 0, 0, fmt.Errorf("%w: unable to find user %s: no matching entries in %s", ErrContainerConfig, name, filepath.Base(file))
}
