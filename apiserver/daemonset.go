package apiserver

import (
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

// DaemonSets (apps/v1): defaults, validation and kubectl's columns.

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
