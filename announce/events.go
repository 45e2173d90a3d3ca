package announce

import (
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// Events are written asynchronously. The Withdrawn events of a shutdown
// are the last thing the agent does, so it counts events recorded but not
// yet written and waits for them before it exits.

// countingRecorder counts every event it hands to the broadcaster.
type countingRecorder struct {
	record.EventRecorder
	pending *atomic.Int64
}

func (r countingRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.pending.Add(1)
	r.EventRecorder.Event(obj, eventtype, reason, message)
}

func (r countingRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.pending.Add(1)
	r.EventRecorder.Eventf(obj, eventtype, reason, messageFmt, args...)
}

func (r countingRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	r.pending.Add(1)
	r.EventRecorder.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
}

// countingSink marks an event written once the API call returned.
type countingSink struct {
	record.EventSink
	pending *atomic.Int64
}

func (s countingSink) Create(e *v1.Event) (*v1.Event, error) {
	defer s.pending.Add(-1)
	return s.EventSink.Create(e)
}

func (s countingSink) Update(e *v1.Event) (*v1.Event, error) {
	defer s.pending.Add(-1)
	return s.EventSink.Update(e)
}

func (s countingSink) Patch(e *v1.Event, data []byte) (*v1.Event, error) {
	defer s.pending.Add(-1)
	return s.EventSink.Patch(e, data)
}

// waitEvents waits until every counted event was written, or timeout (the
// correlator may drop spam, which is then never written).
func waitEvents(pending *atomic.Int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
