package announce

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
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
			vips := BuildVIPs(cfg, tt.svcs, func(key string) map[string]int {
				out := map[string]int{}
				for _, s := range tt.eps[strings.TrimPrefix(key, "default/")] {
					for n, c := range summarizeSlice(s).Ready {
						out[n] += c
					}
				}
				return out
			})
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
				if o := Rank(ip, got)[0].Node; o != tt.owner {
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
	vips := BuildVIPs(cfg, svcs, func(string) map[string]int { return nil })
	if len(vips) != 1 || vips[netip.MustParseAddr("192.0.2.245")] == nil {
		t.Fatalf("got VIPs %v, want only 192.0.2.245", vips)
	}
	if p := vips[netip.MustParseAddr("192.0.2.245")].Pool.Name; p != "lan" {
		t.Errorf("pool %q, want lan", p)
	}
}

func TestBuildVIPsSkipsClassedServices(t *testing.T) {
	cfg := mustConfig(t, testConfig)
	classed := lbService("classed", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.245")
	classed.Spec.LoadBalancerClass = ptr.To("example.com/other")
	if vips := BuildVIPs(cfg, []*v1.Service{classed}, func(string) map[string]int { return nil }); len(vips) != 0 {
		t.Errorf("a Service with a loadBalancerClass produced VIPs %v", vips)
	}
}

func TestBuildVIPsCountsEndpoints(t *testing.T) {
	cfg := mustConfig(t, testConfig)
	svcs := []*v1.Service{
		lbService("a", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.242"),
		lbService("b", v1.ServiceExternalTrafficPolicyCluster, "192.0.2.242"),
	}
	ready := map[string]map[string]int{
		"default/a": {"n1": 2, "n2": 1},
		"default/b": {"n1": 1, "n3": 4},
	}
	v := BuildVIPs(cfg, svcs, func(k string) map[string]int { return ready[k] })[netip.MustParseAddr("192.0.2.242")]
	want := map[string]int{"n1": 3, "n2": 1, "n3": 4}
	if !maps.Equal(v.Endpoints, want) {
		t.Errorf("endpoints %v, want %v", v.Endpoints, want)
	}
	if !maps.Equal(v.LocalNodes, map[string]bool{"n1": true, "n2": true}) {
		t.Errorf("local nodes %v, want n1 and n2 (the Local Service's)", v.LocalNodes)
	}
}

func TestSummarizeSlice(t *testing.T) {
	s := slice("web", endpoint("n1", nil), endpoint("n1", ptr.To(true)), endpoint("n2", ptr.To(false)), endpoint("n3", nil),
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}})
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	got := summarizeSlice(s)
	if got.Service != "default/web" || got.Name != "web-x" || got.Namespace != "default" {
		t.Errorf("summary names %q %s/%s", got.Service, got.Namespace, got.Name)
	}
	if want := map[string]int{"n1": 2, "n3": 1}; !maps.Equal(got.Ready, want) {
		t.Errorf("ready %v, want %v", got.Ready, want)
	}
	cp := got.DeepCopyObject().(*EndpointSummary)
	cp.Ready["n1"] = 9
	if got.Ready["n1"] != 2 {
		t.Error("DeepCopyObject shares the Ready map")
	}
}

func TestTransforms(t *testing.T) {
	mf := []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	lb := lbService("a", v1.ServiceExternalTrafficPolicyLocal, "192.0.2.1")
	lb.ManagedFields = mf
	lb.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	lb.Spec.Ports = []v1.ServicePort{{Port: 80}}
	out, _ := transformService(lb)
	svc := out.(*v1.Service)
	if svc.ManagedFields != nil || svc.Annotations != nil || svc.Spec.Ports != nil {
		t.Errorf("transformed LoadBalancer Service keeps what the planner does not read: %+v", svc)
	}
	if svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal || len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Name != "a" {
		t.Errorf("transformed LoadBalancer Service lost what the planner reads: %+v", svc)
	}
	if lb.ManagedFields == nil {
		t.Error("the transform modified its input")
	}
	cip := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "d", Labels: map[string]string{"a": "b"}},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "10.0.0.1", Selector: map[string]string{"a": "b"}}}
	out, _ = transformService(cip)
	if got := out.(*v1.Service); got.Name != "c" || got.Namespace != "d" || got.Labels != nil || got.Spec.ClusterIP != "" || got.Spec.Selector != nil {
		t.Errorf("a ClusterIP Service keeps more than its name: %+v", got)
	}
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"rack": "r1"}, ManagedFields: mf, Annotations: map[string]string{"a": "b"}},
		Spec:       v1.NodeSpec{Unschedulable: true, Taints: []v1.Taint{{Key: "other"}, {Key: TaintToBeDeleted}}},
		Status: v1.NodeStatus{
			Addresses: []v1.NodeAddress{{Type: v1.NodeHostName, Address: "n1"}, {Type: v1.NodeInternalIP, Address: "192.0.2.11"}},
			Images:    []v1.ContainerImage{{Names: []string{"x"}}},
		},
	}
	out, _ = transformNode(node)
	n := out.(*v1.Node)
	if n.ManagedFields != nil || n.Annotations != nil || n.Status.Images != nil || len(n.Spec.Taints) != 1 || len(n.Status.Addresses) != 1 {
		t.Errorf("transformed Node keeps too much: %+v", n)
	}
	if nv := nodeView(n); !nv.Draining || nv.Labels["rack"] != "r1" || len(nv.InternalIPs) != 1 {
		t.Errorf("transformed Node lost what the election reads: %+v", nv)
	}
	out, _ = transformSlice(slice("web", endpoint("n1", nil)))
	if _, ok := out.(*EndpointSummary); !ok {
		t.Errorf("transformSlice returned %T", out)
	}
}
