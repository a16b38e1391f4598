package apiserver

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/store"
)

// DaemonSets and StatefulSets (apps/v1): defaults, validation and kubectl's columns.

func daemonSetResource() *Resource {
	ds := newResource[appsv1.DaemonSet]("apps", "v1", "DaemonSet", "daemonsets", true)
	ds.ShortNames, ds.Categories, ds.Subresources = []string{"ds"}, []string{"all"}, []string{"status"}
	ds.defaults, ds.validate, ds.prepareUpdate = defaultDaemonSet, validateDaemonSet, keepStatus
	ds.table = append(tableDef{
		{name: "Desired", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.DaemonSet).Status.DesiredNumberScheduled) }},
		{name: "Current", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.DaemonSet).Status.CurrentNumberScheduled) }},
		{name: "Ready", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.DaemonSet).Status.NumberReady) }},
		{name: "Up-to-date", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.DaemonSet).Status.UpdatedNumberScheduled) }},
		{name: "Available", typ: "integer", cell: func(o store.Object) any { return int64(o.(*appsv1.DaemonSet).Status.NumberAvailable) }},
		{name: "Node Selector", typ: "string", cell: func(o store.Object) any {
			return noneIfEmpty(labels.SelectorFromSet(o.(*appsv1.DaemonSet).Spec.Template.Spec.NodeSelector).String())
		}},
	}, workloadWide(
		func(o store.Object) *corev1.PodSpec { return &o.(*appsv1.DaemonSet).Spec.Template.Spec },
		func(o store.Object) *metav1.LabelSelector { return o.(*appsv1.DaemonSet).Spec.Selector })...)
	return ds
}

func defaultDaemonSet(obj store.Object) {
	ds := obj.(*appsv1.DaemonSet)
	if ds.Spec.UpdateStrategy.Type == "" {
		ds.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if ds.Spec.UpdateStrategy.RollingUpdate == nil {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
			ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(1))
		}
		if ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge == nil {
			ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(0))
		}
	}
	if ds.Spec.RevisionHistoryLimit == nil {
		ds.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	defaultPodSpec(&ds.Spec.Template.Spec)
}

func validateDaemonSet(obj, old store.Object) field.ErrorList {
	ds := obj.(*appsv1.DaemonSet)
	errs := validateWorkload(nil, ds.Spec.Selector, &ds.Spec.Template)
	if p := ds.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(specPath.Child("template", "spec", "restartPolicy"), p, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	switch ds.Spec.UpdateStrategy.Type {
	case appsv1.RollingUpdateDaemonSetStrategyType, appsv1.OnDeleteDaemonSetStrategyType:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("updateStrategy", "type"), ds.Spec.UpdateStrategy.Type,
			[]appsv1.DaemonSetUpdateStrategyType{appsv1.OnDeleteDaemonSetStrategyType, appsv1.RollingUpdateDaemonSetStrategyType}))
	}
	if old != nil && !apiequality.Semantic.DeepEqual(ds.Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector) {
		errs = append(errs, field.Invalid(specPath.Child("selector"), ds.Spec.Selector, "field is immutable"))
	}
	return errs
}

// StatefulSets (apps/v1).

func statefulSetResource() *Resource {
	sts := newResource[appsv1.StatefulSet]("apps", "v1", "StatefulSet", "statefulsets", true)
	sts.ShortNames, sts.Categories, sts.Subresources = []string{"sts"}, []string{"all"}, []string{"status", "scale"}
	sts.defaults, sts.validate, sts.prepareUpdate = defaultStatefulSet, validateStatefulSet, keepStatus
	sts.table = append(tableDef{
		{name: "Ready", typ: "string", cell: func(o store.Object) any {
			s := o.(*appsv1.StatefulSet)
			return fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicas(s.Spec.Replicas))
		}},
	}, workloadWide(
		func(o store.Object) *corev1.PodSpec { return &o.(*appsv1.StatefulSet).Spec.Template.Spec },
		func(o store.Object) *metav1.LabelSelector { return o.(*appsv1.StatefulSet).Spec.Selector })[:2]...)
	return sts
}

func defaultStatefulSet(obj store.Object) {
	s := obj.(*appsv1.StatefulSet)
	if s.Spec.Replicas == nil {
		s.Spec.Replicas = ptr.To[int32](1)
	}
	if s.Spec.PodManagementPolicy == "" {
		s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if s.Spec.UpdateStrategy.Type == "" {
		s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if s.Spec.UpdateStrategy.RollingUpdate == nil {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		if s.Spec.UpdateStrategy.RollingUpdate.Partition == nil {
			s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](0)
		}
	}
	if s.Spec.RevisionHistoryLimit == nil {
		s.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.RetainPersistentVolumeClaimRetentionPolicyType}
	}
	defaultPodSpec(&s.Spec.Template.Spec)
}

func validateStatefulSet(obj, old store.Object) field.ErrorList {
	s := obj.(*appsv1.StatefulSet)
	// The template's mounts may name a claim template: each pod gets that volume.
	tmpl := s.Spec.Template.DeepCopy()
	for _, c := range s.Spec.VolumeClaimTemplates {
		if !slices.ContainsFunc(tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.Name }) {
			tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: c.Name,
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}})
		}
	}
	errs := validateWorkload(s.Spec.Replicas, s.Spec.Selector, tmpl)
	if p := s.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(specPath.Child("template", "spec", "restartPolicy"), p, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	switch s.Spec.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("podManagementPolicy"), s.Spec.PodManagementPolicy,
			[]appsv1.PodManagementPolicyType{appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement}))
	}
	for i := range s.Spec.VolumeClaimTemplates {
		c := &s.Spec.VolumeClaimTemplates[i]
		cp := specPath.Child("volumeClaimTemplates").Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(cp.Child("metadata", "name"), ""))
		}
		errs = append(errs, validateClaimSpec(&c.Spec, cp.Child("spec"))...)
	}
	if old != nil {
		// Kubernetes lets these change and nothing else.
		o := old.(*appsv1.StatefulSet).Spec.DeepCopy()
		o.Replicas, o.Ordinals, o.Template, o.UpdateStrategy = s.Spec.Replicas, s.Spec.Ordinals, s.Spec.Template, s.Spec.UpdateStrategy
		o.PersistentVolumeClaimRetentionPolicy, o.MinReadySeconds = s.Spec.PersistentVolumeClaimRetentionPolicy, s.Spec.MinReadySeconds
		if !apiequality.Semantic.DeepEqual(*o, s.Spec) {
			errs = append(errs, field.Forbidden(specPath, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
		}
	}
	return errs
}
