package apiserver

import (
	"path"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// validateVolumes checks a pod's volumes as kube-apiserver does for the fields the node
// acts on, and returns their names.
func validateVolumes(vols []corev1.Volume, p *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, v := range vols {
		vp := p.Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(vp.Child("name"), ""))
		case names.Has(v.Name):
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(vp.Child("name"), v.Name, msg))
			}
		}
		names.Insert(v.Name)
		errs = append(errs, validateVolumeSource(&v.VolumeSource, vp)...)
	}
	return names, errs
}

// validateVolumeSource: exactly one type, and the parts of the types the node mounts.
func validateVolumeSource(s *corev1.VolumeSource, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var set []string
	rv := reflect.ValueOf(s).Elem()
	for i := range rv.NumField() {
		if !rv.Field(i).IsNil() {
			set = append(set, strings.Split(rv.Type().Field(i).Tag.Get("json"), ",")[0])
		}
	}
	if len(set) == 0 {
		return field.ErrorList{field.Required(p, "must specify a volume type")}
	}
	if len(set) > 1 {
		// Kubernetes looks at emptyDir first, then the others in their order.
		if i := slices.Index(set, "emptyDir"); i > 0 {
			set = append([]string{"emptyDir"}, slices.Delete(set, i, i+1)...)
		}
		return field.ErrorList{field.Forbidden(p.Child(set[1]), "may not specify more than 1 volume type")}
	}
	switch {
	case s.ConfigMap != nil:
		errs = append(errs, validateKeysVolume(s.ConfigMap.Name, "name", s.ConfigMap.DefaultMode, s.ConfigMap.Items, p.Child("configMap"))...)
	case s.Secret != nil:
		errs = append(errs, validateKeysVolume(s.Secret.SecretName, "secretName", s.Secret.DefaultMode, s.Secret.Items, p.Child("secret"))...)
	case s.DownwardAPI != nil:
		dp := p.Child("downwardAPI")
		errs = append(errs, validateMode(s.DownwardAPI.DefaultMode, dp.Child("defaultMode"))...)
		errs = append(errs, validateDownwardFiles(s.DownwardAPI.Items, dp.Child("items"))...)
	case s.Projected != nil:
		pp := p.Child("projected")
		errs = append(errs, validateMode(s.Projected.DefaultMode, pp.Child("defaultMode"))...)
		paths := sets.New[string]()
		for i, src := range s.Projected.Sources {
			sp := pp.Child("sources").Index(i)
			var files []string
			switch {
			case src.ConfigMap != nil:
				errs = append(errs, validateKeyToPaths(src.ConfigMap.Items, sp.Child("configMap", "items"))...)
				for _, it := range src.ConfigMap.Items {
					files = append(files, it.Path)
				}
			case src.Secret != nil:
				errs = append(errs, validateKeyToPaths(src.Secret.Items, sp.Child("secret", "items"))...)
				for _, it := range src.Secret.Items {
					files = append(files, it.Path)
				}
			case src.DownwardAPI != nil:
				errs = append(errs, validateDownwardFiles(src.DownwardAPI.Items, sp.Child("downwardAPI", "items"))...)
				for _, it := range src.DownwardAPI.Items {
					files = append(files, it.Path)
				}
			case src.ServiceAccountToken != nil:
				tp := sp.Child("serviceAccountToken")
				if secs := ptr.Deref(src.ServiceAccountToken.ExpirationSeconds, 3600); secs < 600 {
					errs = append(errs, field.Invalid(tp.Child("expirationSeconds"), secs, "may not specify a duration less than 10 minutes"))
				} else if secs > 1<<32 {
					errs = append(errs, field.TooLong(tp.Child("expirationSeconds"), secs, 1<<32))
				}
				if src.ServiceAccountToken.Path == "" {
					errs = append(errs, field.Required(tp.Child("path"), ""))
				} else {
					errs = append(errs, validateLocalPath(src.ServiceAccountToken.Path, tp.Child("path"))...)
				}
				files = append(files, src.ServiceAccountToken.Path)
			}
			for _, f := range files {
				if paths.Has(f) {
					errs = append(errs, field.Invalid(sp, f, "conflicting duplicate paths"))
				}
				paths.Insert(f)
			}
		}
	case s.HostPath != nil:
		hp := p.Child("hostPath")
		if s.HostPath.Path == "" {
			errs = append(errs, field.Required(hp.Child("path"), ""))
		} else if strings.Contains("/"+s.HostPath.Path+"/", "/../") {
			errs = append(errs, field.Invalid(hp.Child("path"), s.HostPath.Path, "must not contain '..'"))
		}
		valid := []corev1.HostPathType{corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
			corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}
		if t := s.HostPath.Type; t != nil && !sets.New(valid...).Has(*t) {
			errs = append(errs, field.NotSupported(hp.Child("type"), *t, valid))
		}
	case s.EmptyDir != nil:
		if m := s.EmptyDir.Medium; m != corev1.StorageMediumDefault && m != corev1.StorageMediumMemory && !strings.HasPrefix(string(m), "HugePages") {
			errs = append(errs, field.NotSupported(p.Child("emptyDir", "medium"), m, []corev1.StorageMedium{corev1.StorageMediumDefault, corev1.StorageMediumMemory}))
		}
		if l := s.EmptyDir.SizeLimit; l != nil && l.Sign() < 0 {
			errs = append(errs, field.Invalid(p.Child("emptyDir", "sizeLimit"), l.String(), "must be greater than or equal to 0"))
		}
	case s.PersistentVolumeClaim != nil:
		if s.PersistentVolumeClaim.ClaimName == "" {
			errs = append(errs, field.Required(p.Child("persistentVolumeClaim", "claimName"), ""))
		}
	}
	return errs
}

// validateKeysVolume checks a ConfigMap or Secret volume: the object's name, the
// default mode and the items.
func validateKeysVolume(name, nameField string, mode *int32, items []corev1.KeyToPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(p.Child(nameField), ""))
	}
	errs = append(errs, validateMode(mode, p.Child("defaultMode"))...)
	return append(errs, validateKeyToPaths(items, p.Child("items"))...)
}

func validateMode(m *int32, p *field.Path) field.ErrorList {
	if m != nil && (*m < 0 || *m > 0o777) {
		return field.ErrorList{field.Invalid(p, *m, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

func validateKeyToPaths(items []corev1.KeyToPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		ip := p.Index(i)
		if it.Key == "" {
			errs = append(errs, field.Required(ip.Child("key"), ""))
		}
		if it.Path == "" {
			errs = append(errs, field.Required(ip.Child("path"), ""))
		} else {
			errs = append(errs, validateLocalPath(it.Path, ip.Child("path"))...)
		}
		errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
	}
	return errs
}

func validateDownwardFiles(items []corev1.DownwardAPIVolumeFile, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	fields := []string{"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"}
	for i, it := range items {
		ip := p.Index(i)
		if it.Path == "" {
			errs = append(errs, field.Required(ip.Child("path"), ""))
		} else {
			errs = append(errs, validateLocalPath(it.Path, ip.Child("path"))...)
		}
		errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			errs = append(errs, field.Invalid(ip, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
		case it.FieldRef != nil:
			fp := it.FieldRef.FieldPath
			if !sets.New(fields...).Has(fp) && !strings.HasPrefix(fp, "metadata.labels['") && !strings.HasPrefix(fp, "metadata.annotations['") {
				errs = append(errs, field.NotSupported(ip.Child("fieldRef", "fieldPath"), fp, fields))
			}
		case it.ResourceFieldRef != nil:
		default:
			errs = append(errs, field.Required(ip, "one of fieldRef and resourceFieldRef is required"))
		}
	}
	return errs
}

// validateLocalPath: a path of a file in a volume, relative, not climbing out of it, and
// not starting with ".." (the writer's own names).
func validateLocalPath(s string, p *field.Path) field.ErrorList {
	errs := validateDescendingPath(s, p)
	if strings.HasPrefix(s, "..") && len(errs) == 0 {
		errs = append(errs, field.Invalid(p, s, "must not start with '..'"))
	}
	return errs
}

// validateDescendingPath: a path inside a volume, relative and not climbing out of it.
func validateDescendingPath(s string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(s) {
		errs = append(errs, field.Invalid(p, s, "must be a relative path"))
	}
	for _, elem := range strings.Split(s, "/") {
		if elem == ".." {
			errs = append(errs, field.Invalid(p, s, "must not contain '..'"))
			break
		}
	}
	return errs
}

// validateVolumeMounts checks a container's mounts name a volume, once per path.
func validateVolumeMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		mp := p.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(mp.Child("name"), ""))
		} else if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(mp.Child("mountPath"), ""))
		} else if paths.Has(m.MountPath) {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" && m.SubPathExpr != "" {
			errs = append(errs, field.Invalid(mp.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
		}
		if m.SubPath != "" {
			errs = append(errs, validateDescendingPath(m.SubPath, mp.Child("subPath"))...)
		}
		if m.SubPathExpr != "" {
			errs = append(errs, validateDescendingPath(m.SubPathExpr, mp.Child("subPathExpr"))...)
		}
		if mode := m.MountPropagation; mode != nil && *mode != corev1.MountPropagationNone && *mode != corev1.MountPropagationHostToContainer &&
			*mode != corev1.MountPropagationBidirectional {
			errs = append(errs, field.NotSupported(mp.Child("mountPropagation"), *mode, []corev1.MountPropagationMode{
				corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone}))
		}
	}
	return errs
}
