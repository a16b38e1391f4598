package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/node/runtime/shim"
)

// A mountError is a volume that cannot be set up yet: the pod's containers wait for it,
// and it is reported as the kubelet reports it (FailedMount).
type mountError struct {
	volume string
	err    error
}

func (e *mountError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", e.volume, e.err)
}

func (e *mountError) Unwrap() error { return e.err }

// setupVolumes makes or refreshes every volume of the pod under its directory on the
// node and returns where each is, by name. ConfigMap, Secret, downward API and projected
// volumes are rewritten when what they show changed (as the kubelet does: a new
// timestamped directory, then an atomic swap of the ..data symlink); tokens are renewed
// at 80% of their life.
func (a *Agent) setupVolumes(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir, err := a.rt.VolumeDir(string(pod.UID), v.Name)
		if err != nil {
			return nil, err
		}
		path, err := a.setupVolume(ctx, pod, &v, dir)
		if err != nil {
			return nil, &mountError{volume: v.Name, err: err}
		}
		out[v.Name] = path
	}
	return out, nil
}

func (a *Agent) setupVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, dir string) (string, error) {
	src := v.VolumeSource
	switch {
	case src.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		os.Chmod(dir, 0o777) // as the kubelet leaves it: any user of the pod may write
		if src.EmptyDir.Medium == corev1.StorageMediumMemory && !isMountPoint(dir) {
			size := ""
			if l := src.EmptyDir.SizeLimit; l != nil && l.Value() > 0 {
				size = fmt.Sprintf(",size=%d", l.Value())
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0777"+size); err != nil {
				return "", fmt.Errorf("mount tmpfs: %w", err)
			}
		}
		return dir, nil
	case src.HostPath != nil:
		return src.HostPath.Path, checkHostPath(src.HostPath)
	case src.PersistentVolumeClaim != nil:
		return a.claimPath(ctx, pod.Namespace, src.PersistentVolumeClaim.ClaimName)
	}
	files, err := a.volumeFiles(ctx, pod, v)
	if err != nil {
		return "", err
	}
	return dir, writeAtomic(dir, files)
}

// isMountPoint reports whether dir is the root of a filesystem other than its parent's.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	return unix.Stat(dir, &st) == nil && unix.Stat(filepath.Dir(dir), &parent) == nil && st.Dev != parent.Dev
}

// checkHostPath checks (or makes) a hostPath volume as its type asks.
func checkHostPath(h *corev1.HostPathVolumeSource) error {
	typ := ptr.Deref(h.Type, corev1.HostPathUnset)
	switch typ {
	case corev1.HostPathDirectoryOrCreate:
		if err := os.MkdirAll(h.Path, 0o755); err != nil {
			return err
		}
	case corev1.HostPathFileOrCreate:
		if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	fi, err := os.Stat(h.Path)
	if typ == corev1.HostPathUnset {
		return nil // no check, as Kubernetes: a missing path is made a directory by the mount
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", h.Path, strings.ToLower(string(typ)))
	}
	var ok bool
	switch m := fi.Mode(); typ {
	case corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory:
		ok = m.IsDir()
	case corev1.HostPathFileOrCreate, corev1.HostPathFile:
		ok = m.IsRegular()
	case corev1.HostPathSocket:
		ok = m&os.ModeSocket != 0
	case corev1.HostPathCharDev:
		ok = m&os.ModeCharDevice != 0
	case corev1.HostPathBlockDev:
		ok = m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
	}
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", h.Path, strings.ToLower(string(typ)))
	}
	return nil
}

// claimPath is the directory of the persistent volume a claim is bound to.
func (a *Agent) claimPath(ctx context.Context, ns, name string) (string, error) {
	pvc, err := a.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("persistentvolumeclaim %q is not bound", name)
	}
	pv, err := a.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, nil
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, checkHostPath(pv.Spec.HostPath)
	}
	return "", fmt.Errorf("persistentvolume %q: only local and hostPath volumes can be mounted on this node", pv.Name)
}

// A file is one file of a ConfigMap, Secret, downward API or projected volume.
type file struct {
	data []byte
	mode os.FileMode
}

// volumeFiles is what a ConfigMap, Secret, downward API or projected volume shows.
func (a *Agent) volumeFiles(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (map[string]file, error) {
	files := map[string]file{}
	src := v.VolumeSource
	switch {
	case src.ConfigMap != nil:
		return files, a.configMapFiles(files, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, modeOf(src.ConfigMap.DefaultMode))
	case src.Secret != nil:
		return files, a.secretFiles(files, pod.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, modeOf(src.Secret.DefaultMode))
	case src.DownwardAPI != nil:
		return files, a.downwardFiles(files, pod, src.DownwardAPI.Items, modeOf(src.DownwardAPI.DefaultMode))
	case src.Projected != nil:
		mode := modeOf(src.Projected.DefaultMode)
		for _, p := range src.Projected.Sources {
			var err error
			switch {
			case p.ConfigMap != nil:
				err = a.configMapFiles(files, pod.Namespace, p.ConfigMap.Name, p.ConfigMap.Items, p.ConfigMap.Optional, mode)
			case p.Secret != nil:
				err = a.secretFiles(files, pod.Namespace, p.Secret.Name, p.Secret.Items, p.Secret.Optional, mode)
			case p.DownwardAPI != nil:
				err = a.downwardFiles(files, pod, p.DownwardAPI.Items, mode)
			case p.ServiceAccountToken != nil:
				var token string
				token, err = a.token(ctx, pod, v.Name, p.ServiceAccountToken)
				files[p.ServiceAccountToken.Path] = file{[]byte(token), mode}
			default:
				err = errors.New("only configMap, secret, downwardAPI and serviceAccountToken projections are supported")
			}
			if err != nil {
				return nil, err
			}
		}
		return files, nil
	}
	return nil, errors.New("this volume type is not supported on this node: use emptyDir, hostPath, configMap, secret, " +
		"downwardAPI, projected or persistentVolumeClaim")
}

func modeOf(m *int32) os.FileMode {
	return os.FileMode(ptr.Deref(m, corev1.ConfigMapVolumeSourceDefaultMode))
}

func (a *Agent) configMapFiles(files map[string]file, ns, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode) error {
	cm, err := a.configMaps.ConfigMaps(ns).Get(name)
	if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configmap %q not found", name)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return project(files, data, items, optional, mode, "configmap")
}

func (a *Agent) secretFiles(files map[string]file, ns, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode) error {
	s, err := a.secrets.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %q not found", name)
	}
	return project(files, s.Data, items, optional, mode, "secret")
}

// project adds the keys of data to files: all of them under their own names, or the
// items asked for under their paths and modes.
func project(files map[string]file, data map[string][]byte, items []corev1.KeyToPath, optional *bool, mode os.FileMode, kind string) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = file{v, mode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if ptr.Deref(optional, false) {
				continue
			}
			return fmt.Errorf("%s references non-existent %s key: %s", kind, kind, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files[it.Path] = file{v, m}
	}
	return nil
}

func (a *Agent) downwardFiles(files map[string]file, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode os.FileMode) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = downwardField(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = resourceValue(pod, it.ResourceFieldRef)
		}
		if err != nil {
			return err
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files[it.Path] = file{[]byte(v), m}
	}
	return nil
}

// downwardField is a field of the pod as a downward API volume shows it: labels and
// annotations as key="value" lines, sorted.
func downwardField(pod *corev1.Pod, path string) (string, error) {
	var m map[string]string
	switch path {
	case "metadata.labels":
		m = pod.Labels
	case "metadata.annotations":
		m = pod.Annotations
	default:
		ip, _ := netip.ParseAddr(pod.Status.PodIP)
		return fieldValue(pod, path, pod.Status.HostIP, ip)
	}
	lines := make([]string, 0, len(m))
	for k, v := range m {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// resourceValue is a container's request or limit in units of the divisor, rounded up,
// a missing limit being the node's capacity, as the kubelet reports it.
func resourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var ctr *corev1.Container
	for i := range pod.Spec.Containers {
		if c := &pod.Spec.Containers[i]; c.Name == ref.ContainerName || ref.ContainerName == "" && i == 0 {
			ctr = c
		}
	}
	if ctr == nil {
		return "", fmt.Errorf("%w: container %q not found in pod", ErrContainerConfig, ref.ContainerName)
	}
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := ctr.Resources.Limits
	if kind == "requests" {
		list = ctr.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok && kind == "limits" {
		q = nodeCapacity()[corev1.ResourceName(name)] // no limit: the node's (zero if it has none)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

// token is the projected service account token of pod's volume, requested bound to the
// pod and renewed once 80% of its life (or a day) has passed.
func (a *Agent) token(ctx context.Context, pod *corev1.Pod, volume string, p *corev1.ServiceAccountTokenProjection) (string, error) {
	k := string(pod.UID) + "/" + volume + "/" + p.Path
	if t, ok := a.tokens.Load(k); ok {
		if t := t.(issuedToken); time.Now().Before(t.renew) {
			return t.token, nil
		}
	}
	var audiences []string
	if p.Audience != "" {
		audiences = []string{p.Audience}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences,
		ExpirationSeconds: ptr.To(ptr.Deref(p.ExpirationSeconds, 3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}
	got, err := a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to fetch token: %w", err)
	}
	now := time.Now()
	life := got.Status.ExpirationTimestamp.Sub(now)
	a.tokens.Store(k, issuedToken{token: got.Status.Token, renew: now.Add(min(life*8/10, 24*time.Hour))})
	return got.Status.Token, nil
}

type issuedToken struct {
	token string
	renew time.Time
}

// dataDir is the symlink the files of a ConfigMap, Secret, downward API or projected
// volume go through, as the kubelet's atomic writer lays them out.
const dataDir = "..data"

// writeAtomic makes dir show exactly files, as the kubelet's atomic writer does: the
// files are written into a new timestamped directory, ..data is switched to it in one
// rename, and each top-level name is a symlink through ..data; so a reader sees the old
// set or the new one, never a mix. Nothing is written when nothing changed. Paths are
// relative and cannot climb out of dir.
func writeAtomic(dir string, files map[string]file) error {
	for p := range files {
		if p == "" || filepath.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") || strings.HasPrefix(p, "..") {
			return fmt.Errorf("invalid path %q", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, dataDir))
	if old != "" && same(filepath.Join(dir, old), files) {
		return nil
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	os.Chmod(ts, 0o755)
	for p, f := range files {
		path := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode.Perm()); err != nil { // not the umask's
			return err
		}
	}
	tmp := filepath.Join(dir, dataDir+"_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDir)); err != nil {
		return err
	}
	top := map[string]bool{}
	for p := range files {
		top[strings.Split(p, "/")[0]] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataDir, name) {
			continue
		}
		os.RemoveAll(link)
		if err := os.Symlink(filepath.Join(dataDir, name), link); err != nil {
			return err
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n := e.Name(); !top[n] && n != dataDir && n != filepath.Base(ts) {
			os.RemoveAll(filepath.Join(dir, n)) // the old timestamped directory, and names gone
		}
	}
	return nil
}

// same reports whether dir holds exactly files, with the same contents and modes.
func same(dir string, files map[string]file) bool {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		f, ok := files[rel]
		info, ierr := d.Info()
		data, rerr := os.ReadFile(path)
		if !ok || ierr != nil || rerr != nil || info.Mode().Perm() != f.mode.Perm() || string(data) != string(f.data) {
			return errors.New("differs")
		}
		n++
		return nil
	})
	return err == nil && n == len(files)
}

// beneath reports whether sub, if it exists, resolves inside dir (the shim resolves it
// again, the same way, when it mounts it).
func beneath(dir, sub string) bool {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return true // the shim says what is wrong
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, sub, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
	if err == nil {
		unix.Close(fd)
	}
	return !errors.Is(err, unix.EXDEV)
}

// containerMounts are the volume mounts of ctr, from where the pod's volumes are.
func containerMounts(ctr *corev1.Container, vols map[string]string, env []string) ([]shim.Mount, error) {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var out []shim.Mount
	for _, m := range ctr.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("%w: volume mount %s: no volume %q", ErrContainerConfig, m.MountPath, m.Name)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, vars)
		}
		if filepath.IsAbs(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
			return nil, fmt.Errorf("%w: volume mount %s: subPath %q must be a relative path within the volume", ErrContainerConfig, m.MountPath, sub)
		}
		if sub != "" && !beneath(src, sub) {
			return nil, fmt.Errorf("%w: failed to prepare subPath for volumeMount %q of container %q: %s resolves outside the volume",
				ErrContainerConfig, m.Name, ctr.Name, sub)
		}
		out = append(out, shim.Mount{Source: src, SubPath: sub, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}
