package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

const (
	provisionedByKey = "pv.kubernetes.io/provisioned-by"
	bindCompletedKey = "pv.kubernetes.io/bind-completed"
	boundByCtrlKey   = "pv.kubernetes.io/bound-by-controller"
)

// VolumeConfig configures the persistent volume controller.
type VolumeConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// Provisioner names the classes whose claims get a directory under StorageDir, one
	// per volume, on this node (NodeName), as k3s's local-path provisioner does.
	Provisioner string
	StorageDir  string
	NodeName    string
	Recorder    record.EventRecorder
	Log         *slog.Logger
}

// Volumes binds PersistentVolumeClaims to PersistentVolumes, as kube-controller-manager's
// persistentvolume controller does: a claim gets the smallest available volume that
// fits (class, size, access modes, selector), or a new one when its class is
// local-path (a directory under StorageDir); a volume whose claim is gone is Released,
// and deleted with its directory when its reclaim policy is Delete.
type Volumes struct {
	cfg     VolumeConfig
	client  kubernetes.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	synced  []cache.InformerSynced
	loop    *Loop
	rec     record.EventRecorder
}

// NewVolumes builds the controller.
func NewVolumes(cfg VolumeConfig) *Volumes {
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	pvc, pv, sc := cfg.Informers.Core().V1().PersistentVolumeClaims(), cfg.Informers.Core().V1().PersistentVolumes(),
		cfg.Informers.Storage().V1().StorageClasses()
	c := &Volumes{cfg: cfg, client: cfg.Client, claims: pvc.Lister(), volumes: pv.Lister(), classes: sc.Lister(), rec: cfg.Recorder,
		synced: []cache.InformerSynced{pvc.Informer().HasSynced, pv.Informer().HasSynced, sc.Informer().HasSynced}}
	c.loop = NewLoop("persistentvolume", cfg.Log, c.reconcile)
	// Keys: "claim/<ns>/<name>" and "volume/<name>".
	prefixed := func(prefix string) cache.ResourceEventHandler {
		enqueue := func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.loop.Enqueue(prefix + k)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}
	}
	pvc.Informer().AddEventHandler(prefixed("claim/"))
	pv.Informer().AddEventHandler(prefixed("volume/"))
	// A volume freed or made may fit a waiting claim; a new class, a claim of it.
	pending := func(any) {
		list, _ := c.claims.List(labels.Everything())
		for _, cl := range list {
			if cl.Status.Phase == corev1.ClaimPending {
				c.loop.Enqueue("claim/" + cl.Namespace + "/" + cl.Name)
			}
		}
	}
	pv.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: pending, UpdateFunc: func(_, o any) { pending(o) }})
	// A claim gone frees its volume.
	pvc.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if cl, ok := obj.(*corev1.PersistentVolumeClaim); ok && cl.Spec.VolumeName != "" {
			c.loop.Enqueue("volume/" + cl.Spec.VolumeName)
		}
	}})
	sc.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: pending})
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Volumes) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

func (c *Volumes) reconcile(ctx context.Context, key string) error {
	if k, ok := strings.CutPrefix(key, "claim/"); ok {
		ns, name, _ := cache.SplitMetaNamespaceKey(k)
		return c.syncClaim(ctx, ns, name)
	}
	return c.syncVolume(ctx, strings.TrimPrefix(key, "volume/"))
}

func (c *Volumes) syncClaim(ctx context.Context, ns, name string) error {
	claim, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // its volume notices
	}
	if err != nil || claim.DeletionTimestamp != nil {
		return err
	}
	if claim.Status.Phase == corev1.ClaimBound {
		if _, err := c.volumes.Get(claim.Spec.VolumeName); apierrors.IsNotFound(err) {
			return c.claimStatus(ctx, claim, corev1.ClaimLost, nil)
		}
		return nil
	}
	pv, err := c.match(claim)
	if err != nil {
		return err
	}
	if pv == nil {
		class := ptr.Deref(claim.Spec.StorageClassName, "")
		if class == "" {
			c.rec.Event(claim, corev1.EventTypeNormal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
			return nil
		}
		sc, err := c.classes.Get(class)
		if err != nil {
			c.rec.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "storageclass.storage.k8s.io %q not found", class)
			return nil
		}
		if sc.Provisioner != c.cfg.Provisioner {
			c.rec.Eventf(claim, corev1.EventTypeNormal, "ExternalProvisioning",
				"Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator.", sc.Provisioner)
			return nil
		}
		if pv, err = c.provision(ctx, claim, sc); err != nil {
			c.rec.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: %v", class, err)
			return err
		}
	}
	return c.bind(ctx, pv, claim)
}

// match finds the volume for a claim: the one it names, or one pre-bound to it, or the
// smallest available one that fits.
func (c *Volumes) match(claim *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	if claim.Spec.VolumeName != "" {
		pv, err := c.volumes.Get(claim.Spec.VolumeName)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return pv, err
	}
	all, err := c.volumes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var sel labels.Selector = labels.Everything()
	if claim.Spec.Selector != nil {
		if sel, err = metav1.LabelSelectorAsSelector(claim.Spec.Selector); err != nil {
			return nil, nil
		}
	}
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	var fits []*corev1.PersistentVolume
	for _, pv := range all {
		if r := pv.Spec.ClaimRef; r != nil {
			if r.Namespace == claim.Namespace && r.Name == claim.Name && (r.UID == "" || r.UID == claim.UID) {
				return pv, nil // pre-bound, or provisioned for it
			}
			continue
		}
		size := pv.Spec.Capacity[corev1.ResourceStorage]
		if pv.Status.Phase != corev1.VolumeAvailable || pv.DeletionTimestamp != nil || pv.Spec.StorageClassName != ptr.Deref(claim.Spec.StorageClassName, "") ||
			size.Cmp(want) < 0 || !sel.Matches(labels.Set(pv.Labels)) || !hasModes(pv.Spec.AccessModes, claim.Spec.AccessModes) {
			continue
		}
		fits = append(fits, pv)
	}
	sort.Slice(fits, func(i, j int) bool {
		a, b := fits[i].Spec.Capacity[corev1.ResourceStorage], fits[j].Spec.Capacity[corev1.ResourceStorage]
		return a.Cmp(b) < 0
	})
	if len(fits) == 0 {
		return nil, nil
	}
	return fits[0], nil
}

func hasModes(have, want []corev1.PersistentVolumeAccessMode) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// provision makes a directory for the claim and a volume for it, pre-bound to it.
func (c *Volumes) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*corev1.PersistentVolume, error) {
	name := "pvc-" + string(claim.UID)
	dir := filepath.Join(c.cfg.StorageDir, fmt.Sprintf("%s_%s_%s", name, claim.Namespace, claim.Name))
	if err := os.MkdirAll(c.cfg.StorageDir, 0o700); err != nil { // inside the data dir, which stays private
		return nil, err
	}
	if err := os.Mkdir(dir, 0o777); err != nil && !os.IsExist(err) {
		return nil, err
	}
	os.Chmod(dir, 0o777) // any user of the pod may write, as with local-path
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{provisionedByKey: sc.Provisioner}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: ptr.Deref(sc.ReclaimPolicy, corev1.PersistentVolumeReclaimDelete),
			StorageClassName:              sc.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace, Name: claim.Name,
				UID: claim.UID, ResourceVersion: claim.ResourceVersion},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn,
					Values: []string{c.cfg.NodeName}}}}}}},
		}}
	got, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return c.client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	c.rec.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s", name)
	return got, nil
}

// bind points the volume at the claim and the claim at the volume, and marks both Bound.
func (c *Volumes) bind(ctx context.Context, pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim) error {
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID == "" {
		next := pv.DeepCopy()
		next.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace,
			Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion}
		metav1.SetMetaDataAnnotation(&next.ObjectMeta, boundByCtrlKey, "yes")
		updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		pv = updated
	}
	if pv.Status.Phase != corev1.VolumeBound {
		next := pv.DeepCopy()
		next.Status.Phase = corev1.VolumeBound
		if _, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if claim.Spec.VolumeName != pv.Name || claim.Annotations[bindCompletedKey] != "yes" {
		next := claim.DeepCopy()
		next.Spec.VolumeName = pv.Name
		metav1.SetMetaDataAnnotation(&next.ObjectMeta, bindCompletedKey, "yes")
		metav1.SetMetaDataAnnotation(&next.ObjectMeta, boundByCtrlKey, "yes")
		updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		claim = updated
	}
	return c.claimStatus(ctx, claim, corev1.ClaimBound, pv)
}

func (c *Volumes) claimStatus(ctx context.Context, claim *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase, pv *corev1.PersistentVolume) error {
	next := claim.DeepCopy()
	next.Status.Phase = phase
	if pv != nil {
		next.Status.AccessModes, next.Status.Capacity = pv.Spec.AccessModes, pv.Spec.Capacity
	}
	if apiequality.Semantic.DeepEqual(next.Status, claim.Status) {
		return nil
	}
	_, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	return err
}

// syncVolume keeps a volume's phase, and reclaims it when its claim is gone.
func (c *Volumes) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pv.DeletionTimestamp != nil {
		return err
	}
	ref := pv.Spec.ClaimRef
	phase := corev1.VolumeAvailable
	if ref != nil {
		claim, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
		switch {
		case err == nil && (ref.UID == "" || claim.UID == ref.UID):
			phase = pv.Status.Phase // binding is the claim's side
			if phase != corev1.VolumeBound {
				c.loop.Enqueue("claim/" + claim.Namespace + "/" + claim.Name)
				return nil
			}
		case ref.UID == "" && apierrors.IsNotFound(err):
			// pre-bound to a claim not made yet: waits for it
		case apierrors.IsNotFound(err) || err == nil:
			// the claim it was bound to is gone
			phase = corev1.VolumeReleased
			if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
				return c.reclaim(ctx, pv)
			}
		default:
			return err
		}
	}
	if pv.Status.Phase == phase {
		return nil
	}
	next := pv.DeepCopy()
	next.Status.Phase = phase
	_, err = c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, next, metav1.UpdateOptions{})
	return err
}

// reclaim deletes a released volume, and its directory when local-path made it.
func (c *Volumes) reclaim(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Annotations[provisionedByKey] == c.cfg.Provisioner && pv.Spec.Local != nil {
		dir := filepath.Clean(pv.Spec.Local.Path)
		if filepath.Dir(dir) != filepath.Clean(c.cfg.StorageDir) || !strings.HasPrefix(filepath.Base(dir), pv.Name+"_") {
			return fmt.Errorf("volume %s: refusing to delete %s, not a directory local-path made", pv.Name, dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	err := c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
