package apiserver

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/store"
)

// PersistentVolumes, PersistentVolumeClaims and StorageClasses. The persistent volume
// controller binds claims and provisions node-local volumes for the default class,
// local-path, as k3s's local-path provisioner does.

// DefaultStorageClass is the class every cluster starts with, and its provisioner.
const (
	DefaultStorageClass  = "local-path"
	LocalPathProvisioner = "minicluster.io/local-path"
	isDefaultClassKey    = "storageclass.kubernetes.io/is-default-class"
)

func storageResources() []*Resource {
	pv := newResource[corev1.PersistentVolume]("", "v1", "PersistentVolume", "persistentvolumes", false)
	pv.ShortNames, pv.Subresources = []string{"pv"}, []string{"status"}
	pv.defaults, pv.validate, pv.prepareUpdate = defaultPV, validatePV, keepStatus
	pv.table = tableDef{
		{name: "Capacity", typ: "string", cell: func(o store.Object) any {
			q := o.(*corev1.PersistentVolume).Spec.Capacity[corev1.ResourceStorage]
			return q.String()
		}},
		{name: "Access Modes", typ: "string", cell: func(o store.Object) any { return accessModes(o.(*corev1.PersistentVolume).Spec.AccessModes) }},
		{name: "Reclaim Policy", typ: "string", cell: func(o store.Object) any {
			return string(o.(*corev1.PersistentVolume).Spec.PersistentVolumeReclaimPolicy)
		}},
		{name: "Status", typ: "string", cell: func(o store.Object) any { return string(o.(*corev1.PersistentVolume).Status.Phase) }},
		{name: "Claim", typ: "string", cell: func(o store.Object) any {
			if r := o.(*corev1.PersistentVolume).Spec.ClaimRef; r != nil {
				return r.Namespace + "/" + r.Name
			}
			return ""
		}},
		{name: "StorageClass", typ: "string", cell: func(o store.Object) any { return o.(*corev1.PersistentVolume).Spec.StorageClassName }},
		{name: "VolumeAttributesClass", typ: "string", cell: func(o store.Object) any {
			return noneIfUnset(o.(*corev1.PersistentVolume).Spec.VolumeAttributesClassName)
		}},
		{name: "Reason", typ: "string", cell: func(o store.Object) any { return o.(*corev1.PersistentVolume).Status.Reason }},
		{name: "VolumeMode", typ: "string", wide: true, cell: func(o store.Object) any { return volumeMode(o.(*corev1.PersistentVolume).Spec.VolumeMode) }},
	}
	sc := newResource[storagev1.StorageClass]("storage.k8s.io", "v1", "StorageClass", "storageclasses", false)
	sc.ShortNames = []string{"sc"}
	sc.defaults, sc.validate = defaultStorageClass, validateStorageClass
	sc.table = tableDef{
		{name: "Name", typ: "string", cell: func(o store.Object) any {
			if o.GetAnnotations()[isDefaultClassKey] == "true" {
				return o.GetName() + " (default)"
			}
			return o.GetName()
		}},
		{name: "Provisioner", typ: "string", cell: func(o store.Object) any { return o.(*storagev1.StorageClass).Provisioner }},
		{name: "ReclaimPolicy", typ: "string", cell: func(o store.Object) any {
			return string(ptr.Deref(o.(*storagev1.StorageClass).ReclaimPolicy, ""))
		}},
		{name: "VolumeBindingMode", typ: "string", cell: func(o store.Object) any {
			return string(ptr.Deref(o.(*storagev1.StorageClass).VolumeBindingMode, ""))
		}},
		{name: "AllowVolumeExpansion", typ: "string", cell: func(o store.Object) any {
			return fmt.Sprint(ptr.Deref(o.(*storagev1.StorageClass).AllowVolumeExpansion, false))
		}},
	}
	pvc := newResource[corev1.PersistentVolumeClaim]("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true)
	pvc.ShortNames, pvc.Subresources = []string{"pvc"}, []string{"status"}
	pvc.defaults, pvc.validate, pvc.prepareUpdate = defaultPVC, validatePVC, keepStatus
	pvc.table = tableDef{
		{name: "Status", typ: "string", cell: func(o store.Object) any { return string(o.(*corev1.PersistentVolumeClaim).Status.Phase) }},
		{name: "Volume", typ: "string", cell: func(o store.Object) any { return o.(*corev1.PersistentVolumeClaim).Spec.VolumeName }},
		{name: "Capacity", typ: "string", cell: func(o store.Object) any {
			if q, ok := o.(*corev1.PersistentVolumeClaim).Status.Capacity[corev1.ResourceStorage]; ok {
				return q.String()
			}
			return ""
		}},
		{name: "Access Modes", typ: "string", cell: func(o store.Object) any { return accessModes(o.(*corev1.PersistentVolumeClaim).Status.AccessModes) }},
		{name: "StorageClass", typ: "string", cell: func(o store.Object) any {
			if c := o.(*corev1.PersistentVolumeClaim).Spec.StorageClassName; c != nil {
				return *c
			}
			return "<unset>"
		}},
		{name: "VolumeAttributesClass", typ: "string", cell: func(o store.Object) any {
			return noneIfUnset(o.(*corev1.PersistentVolumeClaim).Spec.VolumeAttributesClassName)
		}},
		{name: "VolumeMode", typ: "string", wide: true, cell: func(o store.Object) any { return volumeMode(o.(*corev1.PersistentVolumeClaim).Spec.VolumeMode) }},
	}
	return []*Resource{pv, pvc, sc}
}

func noneIfUnset(s *string) string {
	if s == nil || *s == "" {
		return "<unset>"
	}
	return *s
}

func volumeMode(m *corev1.PersistentVolumeMode) string {
	if m == nil {
		return "<unset>"
	}
	return string(*m)
}

// accessModes is kubectl's short form: RWO,ROX,RWX,RWOP.
func accessModes(modes []corev1.PersistentVolumeAccessMode) string {
	short := map[corev1.PersistentVolumeAccessMode]string{corev1.ReadWriteOnce: "RWO", corev1.ReadOnlyMany: "ROX",
		corev1.ReadWriteMany: "RWX", corev1.ReadWriteOncePod: "RWOP"}
	var out []string
	for _, m := range modes {
		out = append(out, short[m])
	}
	return strings.Join(out, ",")
}

func defaultPV(obj store.Object) {
	pv := obj.(*corev1.PersistentVolume)
	if pv.Spec.PersistentVolumeReclaimPolicy == "" {
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	}
	if pv.Spec.VolumeMode == nil {
		fs := corev1.PersistentVolumeFilesystem
		pv.Spec.VolumeMode = &fs
	}
	if pv.Status.Phase == "" {
		pv.Status.Phase = corev1.VolumePending
	}
}

func defaultPVC(obj store.Object) {
	pvc := obj.(*corev1.PersistentVolumeClaim)
	if pvc.Spec.VolumeMode == nil {
		fs := corev1.PersistentVolumeFilesystem
		pvc.Spec.VolumeMode = &fs
	}
	if pvc.Status.Phase == "" {
		pvc.Status.Phase = corev1.ClaimPending
	}
}

func validatePV(obj, _ store.Object) field.ErrorList {
	pv := obj.(*corev1.PersistentVolume)
	p := field.NewPath("spec")
	var errs field.ErrorList
	if len(pv.Spec.AccessModes) == 0 {
		errs = append(errs, field.Required(p.Child("accessModes"), ""))
	}
	if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(p.Child("capacity"), ""))
	}
	return errs
}

func validatePVC(obj, old store.Object) field.ErrorList {
	pvc := obj.(*corev1.PersistentVolumeClaim)
	errs := validateClaimSpec(&pvc.Spec, field.NewPath("spec"))
	if old != nil {
		// Only the requested size may change, and the volume be named once.
		prev := old.(*corev1.PersistentVolumeClaim).Spec.DeepCopy()
		prev.Resources.Requests = pvc.Spec.Resources.Requests
		if prev.VolumeName == "" {
			prev.VolumeName = pvc.Spec.VolumeName
		}
		if !apiequality.Semantic.DeepEqual(*prev, pvc.Spec) {
			errs = append(errs, field.Forbidden(field.NewPath("spec"), "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
		}
	}
	return errs
}

func validateClaimSpec(s *corev1.PersistentVolumeClaimSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.AccessModes) == 0 {
		errs = append(errs, field.Required(p.Child("accessModes"), "at least 1 access mode is required"))
	}
	if _, ok := s.Resources.Requests[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(p.Child("resources").Key(string(corev1.ResourceStorage)), ""))
	}
	return errs
}

func defaultStorageClass(obj store.Object) {
	sc := obj.(*storagev1.StorageClass)
	if sc.ReclaimPolicy == nil {
		sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimDelete)
	}
	if sc.VolumeBindingMode == nil {
		sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingImmediate)
	}
}

func validateStorageClass(obj, old store.Object) field.ErrorList {
	sc := obj.(*storagev1.StorageClass)
	var errs field.ErrorList
	if sc.Provisioner == "" {
		errs = append(errs, field.Required(field.NewPath("provisioner"), ""))
	}
	if old != nil {
		prev := old.(*storagev1.StorageClass)
		if sc.Provisioner != prev.Provisioner {
			errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
		}
		if !apiequality.Semantic.DeepEqual(sc.Parameters, prev.Parameters) {
			errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
		}
	}
	return errs
}

// admitClaim is the DefaultStorageClass admission: a new claim that names no class gets
// the default one, when there is one.
func (a *API) admitClaim(pvc *corev1.PersistentVolumeClaim) {
	if pvc.Spec.StorageClassName != nil {
		return
	}
	list, _, err := a.List(a.reg.Lookup("storage.k8s.io", "storageclasses"), "", Selector{})
	if err != nil {
		return
	}
	for _, o := range list {
		if o.GetAnnotations()[isDefaultClassKey] == "true" {
			pvc.Spec.StorageClassName = ptr.To(o.GetName())
			return
		}
	}
}
