package apiserver

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// events.k8s.io/v1 serves the same events as core/v1, as kube-apiserver does: one
// store, two shapes. The view converts at the API's edge (see storageView), with the
// field mapping of Kubernetes' pkg/apis/events/v1 conversion.

// storageView serves a resource whose objects are stored as another resource's.
type storageView struct {
	kind                   *store.Kind // where and as what they are stored
	toStorage, fromStorage func(store.Object) store.Object
}

// storage is where r's objects are stored.
func (r *Resource) storage() *store.Kind {
	if r.view != nil {
		return r.view.kind
	}
	return &r.Kind
}

// external turns a stored object into what r serves.
func (r *Resource) external(obj store.Object) store.Object {
	if r.view == nil || obj == nil {
		return obj
	}
	out := r.view.fromStorage(obj)
	setTypeMeta(out)
	return out
}

// internal turns what r serves into what is stored.
func (r *Resource) internal(obj store.Object) store.Object {
	if r.view == nil {
		return obj
	}
	out := r.view.toStorage(obj)
	setTypeMeta(out)
	return out
}

func eventToV1(obj store.Object) store.Object {
	e := obj.(*corev1.Event)
	out := &eventsv1.Event{ObjectMeta: *e.ObjectMeta.DeepCopy(), EventTime: e.EventTime, ReportingController: e.ReportingController,
		ReportingInstance: e.ReportingInstance, Action: e.Action, Reason: e.Reason, Regarding: e.InvolvedObject, Note: e.Message,
		Type: e.Type, DeprecatedSource: e.Source, DeprecatedFirstTimestamp: e.FirstTimestamp, DeprecatedLastTimestamp: e.LastTimestamp,
		DeprecatedCount: e.Count}
	if e.Related != nil {
		out.Related = e.Related.DeepCopy()
	}
	if e.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out
}

func eventFromV1(obj store.Object) store.Object {
	e := obj.(*eventsv1.Event)
	out := &corev1.Event{ObjectMeta: *e.ObjectMeta.DeepCopy(), EventTime: e.EventTime, ReportingController: e.ReportingController,
		ReportingInstance: e.ReportingInstance, Action: e.Action, Reason: e.Reason, InvolvedObject: e.Regarding, Message: e.Note,
		Type: e.Type, Source: e.DeprecatedSource, FirstTimestamp: e.DeprecatedFirstTimestamp, LastTimestamp: e.DeprecatedLastTimestamp,
		Count: e.DeprecatedCount}
	if e.Related != nil {
		out.Related = e.Related.DeepCopy()
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out
}

// eventsV1Fields are the selectable fields of events.k8s.io events, computed on the
// stored event: kube-apiserver's core names and their events.k8s.io spellings.
func eventsV1Fields(obj store.Object) fields.Set {
	if e, ok := obj.(*eventsv1.Event); ok {
		obj = eventFromV1(e)
	}
	s := eventFields(obj)
	for core, v1 := range map[string]string{"involvedObject.kind": "regarding.kind", "involvedObject.namespace": "regarding.namespace",
		"involvedObject.name": "regarding.name", "involvedObject.uid": "regarding.uid", "involvedObject.apiVersion": "regarding.apiVersion",
		"involvedObject.resourceVersion": "regarding.resourceVersion", "involvedObject.fieldPath": "regarding.fieldPath",
		"source": "deprecatedSource.component"} {
		s[v1] = s[core]
	}
	return s
}

// eventsV1Table shows events.k8s.io events with the core columns.
func eventsV1Table() tableDef {
	out := make(tableDef, len(eventTable))
	for i, c := range eventTable {
		cell := c.cell
		c.cell = func(o store.Object) any { return cell(eventFromV1(o)) }
		out[i] = c
	}
	return out
}

// validateEventV1 is kube-apiserver's validation of an events.k8s.io event: the new
// fields are required and the deprecated ones must stay unset on create.
func validateEventV1(obj, old store.Object) field.ErrorList {
	e := obj.(*eventsv1.Event)
	var errs field.ErrorList
	if old == nil {
		if e.EventTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
		}
		for name, set := range map[string]bool{"deprecatedFirstTimestamp": !e.DeprecatedFirstTimestamp.IsZero(),
			"deprecatedLastTimestamp": !e.DeprecatedLastTimestamp.IsZero(), "deprecatedCount": e.DeprecatedCount != 0,
			"deprecatedSource": e.DeprecatedSource != (corev1.EventSource{})} {
			if set {
				errs = append(errs, field.Invalid(field.NewPath(name), "", "needs to be unset"))
			}
		}
		for name, v := range map[string]string{"reportingController": e.ReportingController, "reportingInstance": e.ReportingInstance,
			"action": e.Action, "reason": e.Reason} {
			if v == "" {
				errs = append(errs, field.Required(field.NewPath(name), ""))
			} else if len(v) > 128 {
				errs = append(errs, field.TooLong(field.NewPath(name), "", 128))
			}
		}
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
	}
	if len(e.Note) > 1024 {
		errs = append(errs, field.TooLong(field.NewPath("note"), "", 1024))
	}
	return errs
}
