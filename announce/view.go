package announce

import (
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

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
	// InternalIPs of the node, for choosing an interface.
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

// VIPView is one address and what decides who announces it.
type VIPView struct {
	IP       netip.Addr
	Pool     *config.Pool
	Services []*v1.Service
	// LocalNodes restricts candidates to nodes with a ready local endpoint
	// of every externalTrafficPolicy: Local Service using the address; nil
	// means no restriction.
	LocalNodes map[string]bool
}

// Eligible returns the candidates for v among nodes whose agents are live.
func Eligible(v VIPView, nodes map[string]NodeView, live map[string]AgentInfo) []Candidate {
	var out []Candidate
	for name, info := range live {
		n, ok := nodes[name]
		if !ok || n.Excluded || !v.Pool.AdmitsNode(n.Labels) {
			continue
		}
		if v.LocalNodes != nil && !v.LocalNodes[name] {
			continue
		}
		if v.Pool.Mode == config.ModeLayer2 && slices.Contains(info.UnreadyPools, v.Pool.Name) {
			continue
		}
		out = append(out, Candidate{Node: name, Draining: n.Draining})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// ingressIPs returns the addresses in a LoadBalancer Service's status.
func ingressIPs(svc *v1.Service) []netip.Addr {
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		return nil
	}
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// readyNodes returns the nodes with a ready endpoint in slices.
func readyNodes(slices []*discoveryv1.EndpointSlice) map[string]bool {
	out := map[string]bool{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil {
				continue
			}
			// A nil Ready means ready (discovery/v1 API).
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			out[*ep.NodeName] = true
		}
	}
	return out
}

// BuildVIPs groups Services by ingress address and attaches each address's
// pool and endpoint restriction. Addresses outside every pool are not this
// provider's and are skipped. endpoints returns a Service's EndpointSlices.
func BuildVIPs(cfg *config.Config, svcs []*v1.Service, endpoints func(*v1.Service) []*discoveryv1.EndpointSlice) map[netip.Addr]*VIPView {
	vips := map[netip.Addr]*VIPView{}
	for _, svc := range svcs {
		for _, ip := range ingressIPs(svc) {
			pool, ok := cfg.PoolFor(ip)
			if !ok {
				continue
			}
			v, ok := vips[ip]
			if !ok {
				v = &VIPView{IP: ip, Pool: pool}
				vips[ip] = v
			}
			v.Services = append(v.Services, svc)
			if svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
				continue
			}
			ready := readyNodes(endpoints(svc))
			if v.LocalNodes == nil {
				v.LocalNodes = ready
				continue
			}
			for n := range v.LocalNodes {
				if !ready[n] {
					delete(v.LocalNodes, n)
				}
			}
		}
	}
	return vips
}
