package apiserver

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// PersistentVolumes and PersistentVolumeClaims are stored and served (kubectl apply
// --prune's default kinds, manifests that carry them). Nothing provisions or binds them
// yet: a claim stays Pending, as in a cluster without a provisioner.

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
	return []*Resource{pv, pvc}
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
	p := field.NewPath("spec")
	var errs field.ErrorList
	if len(pvc.Spec.AccessModes) == 0 {
		errs = append(errs, field.Required(p.Child("accessModes"), "at least 1 access mode is required"))
	}
	if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(p.Child("resources").Key(string(corev1.ResourceStorage)), ""))
	}
	return errs
}
