package announce

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// applied is how one VIP is announced from this node, as the data planes
// report it (not as planned): layer 2 on an interface, or BGP to peers.
type applied struct {
	Mode      config.Mode
	Interface string
	Peers     []string
	Services  []*v1.Service // for the events
}

func (a applied) same(b applied) bool {
	return a.Mode == b.Mode && a.Interface == b.Interface && slices.Equal(a.Peers, b.Peers)
}

func (a applied) where() string {
	if a.Mode == config.ModeBGP {
		return "to peers " + strings.Join(a.Peers, ", ") + " (bgp)"
	}
	return "on interface " + a.Interface + " (layer2)"
}

// change is one difference between two applied states.
type change struct {
	VIP      netip.Addr
	Old, New *applied // nil: not announced
}

// diffApplied lists what changed from old to cur, sorted by VIP: the one
// place events and announcement metrics come from, for both modes.
func diffApplied(old, cur map[netip.Addr]applied) []change {
	var out []change
	for ip, n := range cur {
		if o, ok := old[ip]; !ok || !o.same(n) {
			c := change{VIP: ip, New: &n}
			if ok {
				c.Old = &o
			}
			out = append(out, c)
		}
	}
	for ip, o := range old {
		if _, ok := cur[ip]; !ok {
			out = append(out, change{VIP: ip, Old: &o})
		}
	}
	slices.SortFunc(out, func(a, b change) int { return a.VIP.Compare(b.VIP) })
	return out
}

// recordChanges turns changes into events on the VIPs' Services.
func recordChanges(rec record.EventRecorder, node string, changes []change) {
	for _, c := range changes {
		if c.New == nil {
			for _, svc := range c.Old.Services {
				rec.Eventf(svc, v1.EventTypeNormal, apicontract.ReasonWithdrawn, "Node %s stopped announcing %s %s", node, c.VIP, c.Old.where())
			}
			continue
		}
		for _, svc := range c.New.Services {
			rec.Eventf(svc, v1.EventTypeNormal, apicontract.ReasonAnnouncing, "Announcing %s from node %s %s", c.VIP, node, c.New.where())
		}
	}
}

// Events are written asynchronously. The Withdrawn events of a shutdown
// are the last thing the agent does, so it counts events recorded but not
// yet written and waits for them before it exits.
type pendingEvents struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n == 0
}

func newPendingEvents() *pendingEvents {
	z := make(chan struct{})
	close(z)
	return &pendingEvents{zero: z}
}

func (p *pendingEvents) add(d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 && d > 0 {
		p.zero = make(chan struct{})
	}
	p.n += d
	if p.n <= 0 {
		p.n = 0
		select {
		case <-p.zero:
		default:
			close(p.zero)
		}
	}
}

// wait returns once every counted event was written or ctx ends (the
// correlator may drop spam, which is then never written).
func (p *pendingEvents) wait(ctx context.Context) {
	p.mu.Lock()
	z := p.zero
	p.mu.Unlock()
	select {
	case <-z:
	case <-ctx.Done():
	}
}

// countingRecorder counts every event it hands to the broadcaster.
type countingRecorder struct {
	record.EventRecorder
	pending *pendingEvents
}

func (r countingRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.pending.add(1)
	r.EventRecorder.Event(obj, eventtype, reason, message)
}

func (r countingRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.pending.add(1)
	r.EventRecorder.Event(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

func (r countingRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	r.pending.add(1)
	r.EventRecorder.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
}

// countingSink marks an event written once the API call returned.
type countingSink struct {
	record.EventSink
	pending *pendingEvents
}

func (s countingSink) Create(e *v1.Event) (*v1.Event, error) {
	defer s.pending.add(-1)
	return s.EventSink.Create(e)
}

func (s countingSink) Update(e *v1.Event) (*v1.Event, error) {
	defer s.pending.add(-1)
	return s.EventSink.Update(e)
}

func (s countingSink) Patch(e *v1.Event, data []byte) (*v1.Event, error) {
	defer s.pending.add(-1)
	return s.EventSink.Patch(e, data)
}
