package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/reference"
)

// The same thing happening again is one Event with a count, as client-go's recorder
// makes it; another reason is another Event; the reference names the object and, for a
// container, its field. (The broadcaster writes from a goroutine of its own: the test
// waits for what it wrote.)
func TestEventsRecordAndCount(t *testing.T) {
	client := fake.NewClientset()
	ev := NewEvents(client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ev.Run(ctx) }()
	defer func() { cancel(); <-done }()
	p := pod("web")
	p.Namespace, p.UID, p.ResourceVersion = "default", "u1", "7"
	rec := ev.Recorder("kubelet", "node1")
	ref, err := reference.GetPartialReference(scheme.Scheme, p, "spec.containers{c}")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rec.Eventf(ref, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s", "c")
	}
	rec.Event(p, corev1.EventTypeNormal, "Scheduled", "Successfully assigned default/web to node1")
	var got []corev1.Event
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		got = l.Items
		i := slices.IndexFunc(got, func(e corev1.Event) bool { return e.Reason == "BackOff" })
		return len(got) == 2 && i >= 0 && got[i].Count == 3, nil
	})
	if err != nil {
		t.Fatalf("events %v: %v", got, err)
	}
	e := got[slices.IndexFunc(got, func(e corev1.Event) bool { return e.Reason == "BackOff" })]
	diff(t, "the BackOff event's object", corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "default", Name: "web", UID: "u1",
		ResourceVersion: "7", FieldPath: "spec.containers{c}"}, e.InvolvedObject)
	diff(t, "the BackOff event", fmt.Sprint(corev1.EventSource{Component: "kubelet", Host: "node1"}, " Warning Back-off restarting failed container c"),
		fmt.Sprint(e.Source, " ", e.Type, " ", e.Message))
}
