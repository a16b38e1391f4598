package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/store"
)

// ConfigMaps, Secrets and ServiceAccounts: defaults, validation (the rules and messages
// of Kubernetes' pkg/apis/core/validation) and their tables.

var (
	dataPath      = field.NewPath("data")
	immutablePath = field.NewPath("immutable")
)

const immutableMsg = "field is immutable when `immutable` is set"

// validateDataKeys checks the keys of a ConfigMap's or Secret's data.
func validateDataKeys[V any](data map[string]V, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k := range data {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(p.Key(k), k, msg))
		}
	}
	return errs
}

// validateImmutableData refuses changes to data once the old object is immutable.
func validateImmutableData(oldImmutable, newImmutable *bool, dataChanged bool) field.ErrorList {
	if oldImmutable == nil || !*oldImmutable {
		return nil
	}
	var errs field.ErrorList
	if newImmutable == nil || !*newImmutable {
		errs = append(errs, field.Forbidden(immutablePath, immutableMsg))
	}
	if dataChanged {
		errs = append(errs, field.Forbidden(dataPath, immutableMsg))
	}
	return errs
}

func validateConfigMap(obj, old store.Object) field.ErrorList {
	cm := obj.(*corev1.ConfigMap)
	errs := validateDataKeys(cm.Data, dataPath)
	errs = append(errs, validateDataKeys(cm.BinaryData, field.NewPath("binaryData"))...)
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
		if _, dup := cm.BinaryData[k]; dup {
			errs = append(errs, field.Invalid(dataPath.Key(k), k, "duplicate of key present in binaryData"))
		}
	}
	for k, v := range cm.BinaryData {
		size += len(k) + len(v)
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", corev1.MaxSecretSize))
	}
	if old != nil {
		o := old.(*corev1.ConfigMap)
		changed := !maps.Equal(o.Data, cm.Data) || !maps.EqualFunc(o.BinaryData, cm.BinaryData, bytes.Equal)
		errs = append(errs, validateImmutableData(o.Immutable, cm.Immutable, changed)...)
	}
	return errs
}

// defaultSecret folds stringData into data, as the v1 conversion does: stringData is
// write-only and never stored.
func defaultSecret(obj store.Object) {
	s := obj.(*corev1.Secret)
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 && s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

func validateSecret(obj, old store.Object) field.ErrorList {
	s := obj.(*corev1.Secret)
	errs := validateDataKeys(s.Data, dataPath)
	size := 0
	for _, v := range s.Data {
		size += len(v)
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	required := func(keys ...string) {
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				errs = append(errs, field.Required(dataPath.Key(k), ""))
			}
		}
	}
	validJSON := func(k string) {
		if v, ok := s.Data[k]; ok && !json.Valid(v) {
			errs = append(errs, field.Invalid(dataPath.Key(k), "<secret contents redacted>", "invalid JSON"))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		required(corev1.DockerConfigKey)
		validJSON(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		required(corev1.DockerConfigJsonKey)
		validJSON(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		_, user := s.Data[corev1.BasicAuthUsernameKey]
		_, pass := s.Data[corev1.BasicAuthPasswordKey]
		if !user && !pass {
			required(corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
		}
	case corev1.SecretTypeSSHAuth:
		required(corev1.SSHAuthPrivateKey)
	case corev1.SecretTypeTLS:
		required(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	default:
		for _, msg := range validation.IsQualifiedName(string(s.Type)) {
			errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, msg))
		}
	}
	if old != nil {
		o := old.(*corev1.Secret)
		if o.Type != s.Type {
			errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
		}
		errs = append(errs, validateImmutableData(o.Immutable, s.Immutable, !maps.EqualFunc(o.Data, s.Data, bytes.Equal))...)
	}
	return errs
}

func secretFields(obj store.Object) fields.Set {
	s := metaFields(obj)
	s["type"] = string(obj.(*corev1.Secret).Type)
	return s
}

func validateServiceAccount(obj, old store.Object) field.ErrorList {
	var errs field.ErrorList
	for i, ref := range obj.(*corev1.ServiceAccount).ImagePullSecrets {
		if ref.Name == "" {
			errs = append(errs, field.Required(field.NewPath("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	return errs
}

var configMapTable = tableDef{{name: "Data", typ: "integer", cell: func(o store.Object) any {
	cm := o.(*corev1.ConfigMap)
	return int64(len(cm.Data) + len(cm.BinaryData))
}}}

var secretTable = tableDef{
	{name: "Type", typ: "string", cell: func(o store.Object) any { return string(o.(*corev1.Secret).Type) }},
	{name: "Data", typ: "integer", cell: func(o store.Object) any { return int64(len(o.(*corev1.Secret).Data)) }},
}

var serviceAccountTable = tableDef{{name: "Secrets", typ: "integer", cell: func(o store.Object) any {
	return int64(len(o.(*corev1.ServiceAccount).Secrets))
}}}

// admitServiceAccount is the ServiceAccount admission for a new pod: serviceAccountName
// defaults to "default", and any other name must be an existing account. ("default" is
// kept in every namespace by the serviceaccount controller; a brand-new namespace has it
// a moment later, and kube-apiserver waits for it, so it is not checked here.)
func (a *API) admitServiceAccount(r *Resource, pod *corev1.Pod) error {
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = pod.Spec.DeprecatedServiceAccount
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName
	ns, name := pod.Namespace, pod.Spec.ServiceAccountName
	obj, err := a.Get(a.reg.Lookup("", "serviceaccounts"), ns, name)
	if err != nil && name != "default" {
		return apierrors.NewForbidden(r.GroupResource(), pod.Name,
			fmt.Errorf("error looking up service account %s/%s: serviceaccount %q not found", ns, name, name))
	}
	automount := true
	if sa, ok := obj.(*corev1.ServiceAccount); ok && sa.AutomountServiceAccountToken != nil {
		automount = *sa.AutomountServiceAccountToken
	}
	if pod.Spec.AutomountServiceAccountToken != nil {
		automount = *pod.Spec.AutomountServiceAccountToken
	}
	if automount {
		mountServiceAccountToken(&pod.Spec)
	}
	return nil
}

// serviceAccountMountPath is where pods find their token, CA and namespace.
const serviceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// mountServiceAccountToken adds the kube-api-access-xxxxx projected volume (a bound
// token, the cluster's CA and the namespace) and mounts it in every container that does
// not mount something there already, as the ServiceAccount admission plugin does.
func mountServiceAccountToken(s *corev1.PodSpec) {
	for _, v := range s.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") {
			return
		}
	}
	name := "kube-api-access-" + utilrand.String(5)
	s.Volumes = append(s.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}})
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			if !slices.ContainsFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == serviceAccountMountPath }) {
				list[i].VolumeMounts = append(list[i].VolumeMounts, corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: serviceAccountMountPath})
			}
		}
	}
}
