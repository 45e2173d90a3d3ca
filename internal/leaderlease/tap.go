package leaderlease

import (
	"fmt"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// becameLeader is how client-go's Lease lock words the event it records on
// winning: "<identity> became leader" (resourcelock.LeaseLock.RecordEvent),
// reason LeaderElection.
const (
	leaderElectionReason = "LeaderElection"
	becameLeaderSuffix   = " became leader"
)

// Tap returns a recorder that passes every event on to next and, when the
// Lease namespace/name records that this process became leader, calls
// onLeading with the identity it won under. The framework builds that
// identity inside its Run and tells it to nobody else; the lock's event is
// where it shows. Pass the result as the CompletedConfig's EventRecorder
// before Run builds the lock from it.
func Tap(next record.EventRecorder, namespace, name string, onLeading func(identity string)) record.EventRecorder {
	return &tap{EventRecorder: next, namespace: namespace, name: name, onLeading: onLeading}
}

type tap struct {
	record.EventRecorder
	namespace, name string
	onLeading       func(identity string)
}

func (t *tap) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	t.EventRecorder.Eventf(object, eventtype, reason, messageFmt, args...)
	lease, ok := object.(*coordinationv1.Lease)
	if !ok || reason != leaderElectionReason || lease.Namespace != t.namespace || lease.Name != t.name {
		return
	}
	if identity, ok := strings.CutSuffix(fmt.Sprintf(messageFmt, args...), becameLeaderSuffix); ok && identity != "" {
		t.onLeading(identity)
	}
}
