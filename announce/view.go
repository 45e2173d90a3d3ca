package announce

import (
	"maps"
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Node labels and taints the election reads.
const (
	// LabelExcludeFromLB keeps a node out of every election.
	LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"
	// TaintToBeDeleted is set by the cluster autoscaler on nodes it is
	// about to remove.
	TaintToBeDeleted = "ToBeDeletedByClusterAutoscaler"
)

// NodeView is what the election needs to know about a node.
type NodeView struct {
	Name     string
	Labels   map[string]string
	Draining bool // cordoned or about to be deleted: announces last
	Excluded bool // labelled exclude-from-external-load-balancers
	// InternalIPs of the node, for choosing an interface and for sending
	// heartbeats.
	InternalIPs []netip.Addr
}

// nodeView reads the election's view of n.
func nodeView(n *v1.Node) NodeView {
	nv := NodeView{Name: n.Name, Labels: n.Labels, Draining: n.Spec.Unschedulable}
	_, nv.Excluded = n.Labels[LabelExcludeFromLB]
	for _, t := range n.Spec.Taints {
		if t.Key == TaintToBeDeleted {
			nv.Draining = true
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type != v1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			nv.InternalIPs = append(nv.InternalIPs, ip.Unmap())
		}
	}
	return nv
}

// heartbeatAddr is where a node's agent listens for heartbeats: its first
// IPv4 InternalIP, else its first InternalIP.
func (n NodeView) heartbeatAddr() (netip.Addr, bool) {
	for _, ip := range n.InternalIPs {
		if ip.Is4() {
			return ip, true
		}
	}
	if len(n.InternalIPs) > 0 {
		return n.InternalIPs[0], true
	}
	return netip.Addr{}, false
}

// VIPView is one address and what decides who announces it.
type VIPView struct {
	IP       netip.Addr
	Pool     *config.Pool
	Services []*v1.Service
	// LocalNodes restricts candidates to nodes with a ready local endpoint
	// of every externalTrafficPolicy: Local Service using the address; nil
	// means no restriction.
	LocalNodes map[string]bool
	// Endpoints counts the ready endpoints on each node, over every
	// Service using the address (BGP weights ECMP by it).
	Endpoints map[string]int
}

// Eligible returns the candidates for v among members, the agents with a
// Lease and what they published, sorted by name: the node matches the
// pool's nodeSelector, is not excluded, serves every Local Service of the
// address and (layer 2) has an interface up for the pool. Liveness is not
// judged here: the planner does that on the ranked list.
func Eligible(v VIPView, nodes map[string]NodeView, members map[string]AgentInfo) []Candidate {
	out := eligibleCandidates(v, nodes, members)
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// eligibleCandidates is Eligible in no particular order.
func eligibleCandidates(v VIPView, nodes map[string]NodeView, members map[string]AgentInfo) []Candidate {
	var out []Candidate
	for name, info := range members {
		if eligible(v, name, nodes, info) {
			out = append(out, Candidate{Node: name, Draining: nodes[name].Draining})
		}
	}
	return out
}

// eligible reports whether the member name, which published info, may
// announce v.
func eligible(v VIPView, name string, nodes map[string]NodeView, info AgentInfo) bool {
	n, ok := nodes[name]
	if !ok || n.Excluded || !v.Pool.AdmitsNode(n.Labels) {
		return false
	}
	if v.LocalNodes != nil && !v.LocalNodes[name] {
		return false
	}
	return v.Pool.Mode != config.ModeLayer2 || !slices.Contains(info.UnreadyPools, v.Pool.Name)
}

// serviceKey names a Service as "namespace/name".
func serviceKey(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

// isOurs reports whether svc is a LoadBalancer Service the CCM of this
// project serves (no loadBalancerClass: classed Services belong to another
// implementation).
func isOurs(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// BuildVIPs groups Services by ingress address and attaches each address's
// pool, endpoint restriction and endpoint counts. Addresses outside every
// pool are not this provider's and are skipped. ready returns the ready
// endpoints per node of the Service "namespace/name" (nil: none).
func BuildVIPs(cfg *config.Config, svcs []*v1.Service, ready func(service string) map[string]int) map[netip.Addr]*VIPView {
	vips := map[netip.Addr]*VIPView{}
	for _, svc := range svcs {
		if !isOurs(svc) {
			continue
		}
		var eps map[string]int
		for _, ip := range apicontract.IngressIPs(svc) {
			pool, ok := cfg.PoolFor(ip)
			if !ok {
				continue
			}
			if eps == nil {
				eps = ready(serviceKey(svc))
			}
			v, ok := vips[ip]
			if !ok {
				v = &VIPView{IP: ip, Pool: pool, Endpoints: map[string]int{}}
				vips[ip] = v
			}
			v.Services = append(v.Services, svc)
			for n, c := range eps {
				v.Endpoints[n] += c
			}
			if svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
				continue
			}
			if v.LocalNodes == nil {
				v.LocalNodes = map[string]bool{}
				for n, c := range eps {
					if c > 0 {
						v.LocalNodes[n] = true
					}
				}
				continue
			}
			for n := range v.LocalNodes {
				if eps[n] == 0 {
					delete(v.LocalNodes, n)
				}
			}
		}
	}
	return vips
}

// EndpointSummary is all the agent keeps of an EndpointSlice (the informer
// transform replaces each slice with one): the Service it belongs to and
// how many ready endpoints each node has. A cluster's EndpointSlices are
// most of what an agent would otherwise hold in memory.
type EndpointSummary struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Service string         // "namespace/name"; empty if the slice has no service label
	Ready   map[string]int // node -> ready endpoints
}

// DeepCopyObject implements runtime.Object.
func (s *EndpointSummary) DeepCopyObject() runtime.Object {
	c := *s
	s.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Ready = maps.Clone(s.Ready)
	return &c
}

// summarizeSlice reduces an EndpointSlice to an EndpointSummary.
func summarizeSlice(s *discoveryv1.EndpointSlice) *EndpointSummary {
	out := &EndpointSummary{ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
	}}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		out.Service = s.Namespace + "/" + name
	}
	for _, ep := range s.Endpoints {
		if ep.NodeName == nil {
			continue
		}
		// A nil Ready means ready (discovery/v1 API).
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		if out.Ready == nil {
			out.Ready = map[string]int{}
		}
		out.Ready[*ep.NodeName]++
	}
	return out
}

// Informer transforms: each keeps only what the planner reads, so memory
// follows the number of LoadBalancer Services, not the cluster's size.

// transformService keeps a LoadBalancer Service's identity, type, traffic
// policy, class and ingress addresses; of any other Service only its name
// (the informer still needs the key to track deletion).
func transformService(obj any) (any, error) {
	svc, ok := obj.(*v1.Service)
	if !ok {
		return obj, nil
	}
	out := &v1.Service{ObjectMeta: metav1.ObjectMeta{
		Name: svc.Name, Namespace: svc.Namespace, UID: svc.UID, ResourceVersion: svc.ResourceVersion,
	}}
	out.Spec.Type = svc.Spec.Type
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		return out, nil
	}
	out.Spec.ExternalTrafficPolicy = svc.Spec.ExternalTrafficPolicy
	out.Spec.LoadBalancerClass = svc.Spec.LoadBalancerClass
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out.Status.LoadBalancer.Ingress = append(out.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: in.IP})
		}
	}
	return out, nil
}

// transformSlice replaces an EndpointSlice with its EndpointSummary.
func transformSlice(obj any) (any, error) {
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		return summarizeSlice(s), nil
	}
	return obj, nil
}

// transformNode keeps a Node's name, labels, schedulability, the
// autoscaler's deletion taint and its InternalIPs.
func transformNode(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return obj, nil
	}
	out := &v1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels,
	}}
	out.Spec.Unschedulable = n.Spec.Unschedulable
	for _, t := range n.Spec.Taints {
		if t.Key == TaintToBeDeleted {
			out.Spec.Taints = append(out.Spec.Taints, t)
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out, nil
}

// dropManagedFields is the transform of every other informer. It drops
// them from a copy: the object handed in may be shared (a fake API's
// watch hands out what it stores).
func dropManagedFields(obj any) (any, error) {
	m, ok := obj.(metav1.Object)
	if !ok || len(m.GetManagedFields()) == 0 {
		return obj, nil
	}
	r, ok := obj.(runtime.Object)
	if !ok {
		return obj, nil
	}
	c := r.DeepCopyObject()
	c.(metav1.Object).SetManagedFields(nil)
	return c, nil
}
