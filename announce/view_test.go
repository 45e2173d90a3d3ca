package announce

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

const testConfig = `
pools:
  - name: lan
    addresses: [192.0.2.240-192.0.2.250]
  - name: rack1
    addresses: [198.51.100.0/28]
    nodeSelector: {matchLabels: {rack: r1}}
`

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("parsing test config: %v", err)
	}
	return c
}

func lbService(name string, etp v1.ServiceExternalTrafficPolicy, ips ...string) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: etp},
	}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

func slice(svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Endpoints:  eps,
	}
}

func endpoint(node string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestNodeView(t *testing.T) {
	tests := []struct {
		name               string
		node               v1.Node
		draining, excluded bool
	}{
		{"plain", v1.Node{}, false, false},
		{"cordoned", v1.Node{Spec: v1.NodeSpec{Unschedulable: true}}, true, false},
		{"autoscaler deleting", v1.Node{Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: TaintToBeDeleted, Effect: v1.TaintEffectNoSchedule}}}}, true, false},
		{"excluded (label value does not matter)", v1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelExcludeFromLB: ""}}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nv := nodeView(&tt.node)
			if nv.Draining != tt.draining || nv.Excluded != tt.excluded {
				t.Errorf("draining=%v excluded=%v, want %v %v", nv.Draining, nv.Excluded, tt.draining, tt.excluded)
			}
		})
	}
}

func TestEligible(t *testing.T) {
	cfg := mustConfig(t, testConfig)
	nodes := map[string]NodeView{
		"n1": {Name: "n1", Labels: map[string]string{"rack": "r1"}},
		"n2": {Name: "n2", Labels: map[string]string{"rack": "r2"}},
		"n3": {Name: "n3", Labels: map[string]string{"rack": "r1"}, Draining: true},
		"n4": {Name: "n4", Excluded: true},
	}
	allLive := map[string]AgentInfo{"n1": {}, "n2": {}, "n3": {}, "n4": {}}
	tests := []struct {
		name  string
		ip    string
		svcs  []*v1.Service
		eps   map[string][]*discoveryv1.EndpointSlice
		live  map[string]AgentInfo
		want  []Candidate
		owner string // when only one candidate can win
	}{
		{
			name: "every live, not excluded node",
			ip:   "192.0.2.240", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.240")},
			live: allLive,
			want: []Candidate{{Node: "n1"}, {Node: "n2"}, {Node: "n3", Draining: true}},
		},
		{
			name: "pool nodeSelector",
			ip:   "198.51.100.1", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyCluster, "198.51.100.1")},
			live: allLive,
			want: []Candidate{{Node: "n1"}, {Node: "n3", Draining: true}}, owner: "n1",
		},
		{
			name: "dead agents are not candidates",
			ip:   "192.0.2.240", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.240")},
			live: map[string]AgentInfo{"n2": {}, "n9": {}},
			want: []Candidate{{Node: "n2"}}, owner: "n2",
		},
		{
			name: "a node whose interface for the pool is down is not a candidate",
			ip:   "192.0.2.240", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.240")},
			live: map[string]AgentInfo{"n1": {UnreadyPools: []string{"lan"}}, "n2": {UnreadyPools: []string{"rack1"}}},
			want: []Candidate{{Node: "n2"}}, owner: "n2",
		},
		{
			name: "ETP Local: only nodes with a ready endpoint",
			ip:   "192.0.2.241", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.241")},
			eps: map[string][]*discoveryv1.EndpointSlice{"a": {slice("a",
				endpoint("n1", ptr.To(false)), endpoint("n2", nil), endpoint("n3", ptr.To(true)))}},
			live: allLive,
			want: []Candidate{{Node: "n2"}, {Node: "n3", Draining: true}}, owner: "n2",
		},
		{
			name: "ETP Local with no endpoints: nobody",
			ip:   "192.0.2.241", svcs: []*v1.Service{lbService("a", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.241")},
			live: allLive,
			want: nil,
		},
		{
			name: "shared address: a node must serve every Local Service",
			ip:   "192.0.2.242",
			svcs: []*v1.Service{
				lbService("a", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.242"),
				lbService("b", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.242"),
				lbService("c", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.242"),
			},
			eps: map[string][]*discoveryv1.EndpointSlice{
				"a": {slice("a", endpoint("n1", nil), endpoint("n2", nil))},
				"b": {slice("b", endpoint("n2", nil), endpoint("n3", nil))},
			},
			live: allLive,
			want: []Candidate{{Node: "n2"}}, owner: "n2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vips := BuildVIPs(cfg, tt.svcs, func(svc *v1.Service) []*discoveryv1.EndpointSlice { return tt.eps[svc.Name] })
			ip := netip.MustParseAddr(tt.ip)
			v, ok := vips[ip]
			if !ok {
				t.Fatalf("no VIP %s built from the Services", ip)
			}
			if len(v.Services) != len(tt.svcs) {
				t.Errorf("VIP has %d Services, want %d", len(v.Services), len(tt.svcs))
			}
			got := Eligible(*v, nodes, tt.live)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("candidates %v, want %v", got, tt.want)
			}
			if tt.owner != "" {
				if o, _ := Owner(ip, got); o != tt.owner {
					t.Errorf("owner %s, want %s", o, tt.owner)
				}
			}
		})
	}
}

func TestBuildVIPsSkipsForeignAddresses(t *testing.T) {
	cfg := mustConfig(t, testConfig)
	svcs := []*v1.Service{
		lbService("in-pool", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.245"),
		lbService("foreign", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.7"),
		{ObjectMeta: metav1.ObjectMeta{Name: "clusterip"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP},
			Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "192.0.2.246"}}}}},
	}
	vips := BuildVIPs(cfg, svcs, func(*v1.Service) []*discoveryv1.EndpointSlice { return nil })
	if len(vips) != 1 || vips[netip.MustParseAddr("192.0.2.245")] == nil {
		t.Fatalf("got VIPs %v, want only 192.0.2.245", vips)
	}
	if p := vips[netip.MustParseAddr("192.0.2.245")].Pool.Name; p != "lan" {
		t.Errorf("pool %q, want lan", p)
	}
}
