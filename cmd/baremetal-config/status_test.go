package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

const statusConfig = `pools:
  - name: lan
    addresses: [192.0.2.0/28, "2001:db8::/120"]
  - name: rack2
    addresses: [192.0.2.100-192.0.2.109]
    nodeSelector: {matchLabels: {rack: r2}}
  - name: routed
    addresses: [203.0.113.0/24]
    mode: bgp
bgp:
  asn: 64512
  peers:
    - {name: tor-1, address: 198.51.100.1, asn: 64500, nodeSelector: {matchLabels: {rack: r1}}}
    - {name: tor-2, address: 198.51.100.2, asn: 64500, nodeSelector: {matchLabels: {rack: r2}}}
`

var statusNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func node(name, rack string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"rack": rack}}}
}

func lease(node string, renewedAgo time.Duration, leaving bool) *coordinationv1.Lease {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: announce.LeasePrefix + node, Namespace: "baremetal-system", Annotations: map[string]string{}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(40)),
			RenewTime: &metav1.MicroTime{Time: statusNow.Add(-renewedAgo)},
		},
	}
	if leaving {
		l.Annotations[announce.AnnotationLeaving] = "true"
	}
	return l
}

func lbService(ns, name string, local bool, ips ...string) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer}}
	if local {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(ns, svc string, nodes ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for _, n := range nodes {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: ptr.To(n)})
	}
	return s
}

func TestStatus(t *testing.T) {
	cfg, err := config.Parse([]byte(statusConfig))
	if err != nil {
		t.Fatal(err)
	}
	base := []runtime.Object{
		node("n1", "r1"), node("n2", "r2"), node("n3", "r2"),
		lbService("default", "web", false, "192.0.2.1", "2001:db8::1"),
		lbService("team-a", "only-r2", false, "192.0.2.100"),
		lbService("team-a", "local", true, "192.0.2.2"),
		slice("team-a", "local", "n1"),
		lbService("default", "routed", false, "203.0.113.7"),
		lbService("default", "pending", false),
		lbService("default", "foreign", false, "10.9.9.9"),
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "classed"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("other")}},
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cluster-ip"}},
	}
	tests := []struct {
		name    string
		leases  []runtime.Object
		ns      string
		check   func(t *testing.T, r *Report, by map[string][]string)
		nodeMap map[string]string // node -> agent state
	}{
		{
			name:   "every agent running",
			leases: []runtime.Object{lease("n1", time.Second, false), lease("n2", time.Second, false), lease("n3", time.Second, false)},
			check: func(t *testing.T, r *Report, by map[string][]string) {
				for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
					if len(by[ip]) != 1 {
						t.Errorf("%s announced by %v, want one layer-2 owner", ip, by[ip])
					}
				}
				if o := by["192.0.2.100"]; len(o) != 1 || o[0] == "n1" {
					t.Errorf("rack2 address owned by %v, want n2 or n3 (its nodeSelector)", o)
				}
				if o := by["192.0.2.2"]; !slices.Equal(o, []string{"n1"}) {
					t.Errorf("Local Service owned by %v, want n1, the node with its endpoint", o)
				}
				if o := by["203.0.113.7"]; !slices.Equal(o, []string{"n1", "n2", "n3"}) {
					t.Errorf("bgp address advertised by %v, want every node", o)
				}
				if o := by["10.9.9.9"]; len(o) != 0 {
					t.Errorf("an address outside the pools is announced by %v", o)
				}
			},
			nodeMap: map[string]string{"n1": "running", "n2": "running", "n3": "running"},
		},
		{
			name:   "agents leaving, expired or missing announce nothing",
			leases: []runtime.Object{lease("n1", time.Second, false), lease("n2", time.Minute, false), lease("n3", time.Second, true)},
			check: func(t *testing.T, r *Report, by map[string][]string) {
				if o := by["192.0.2.100"]; len(o) != 0 {
					t.Errorf("rack2 address owned by %v, but its nodes' agents are expired and leaving", o)
				}
				if o := by["192.0.2.1"]; !slices.Equal(o, []string{"n1"}) {
					t.Errorf("lan address owned by %v, want n1, the only running agent", o)
				}
				if o := by["203.0.113.7"]; !slices.Equal(o, []string{"n1"}) {
					t.Errorf("bgp address advertised by %v, want n1", o)
				}
			},
			nodeMap: map[string]string{"n1": "running", "n2": "lease expired", "n3": "leaving"},
		},
		{
			name: "no agents", ns: "team-a",
			check: func(t *testing.T, r *Report, by map[string][]string) {
				if len(r.Services) != 2 || r.Services[0].Name != "local" || r.Services[1].Name != "only-r2" {
					t.Errorf("-n team-a lists %+v", r.Services)
				}
			},
			nodeMap: map[string]string{"n1": "no agent", "n2": "no agent", "n3": "no agent"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(append(append([]runtime.Object{}, base...), tt.leases...)...)
			r, err := collect(context.Background(), client, cfg, tt.ns, "baremetal-system", clocktesting.NewFakePassiveClock(statusNow))
			if err != nil {
				t.Fatal(err)
			}
			by := map[string][]string{}
			for _, s := range r.Services {
				for _, a := range s.Addresses {
					by[a.IP] = a.AnnouncedBy
				}
			}
			tt.check(t, r, by)
			for _, n := range r.Nodes {
				if n.Agent != tt.nodeMap[n.Name] {
					t.Errorf("node %s agent %q, want %q", n.Name, n.Agent, tt.nodeMap[n.Name])
				}
			}
			for _, a := range client.Actions() {
				if a.GetVerb() != "list" && a.GetVerb() != "get" {
					t.Errorf("status wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
				}
			}
		})
	}

	// The owner moves when it leaves, to the other eligible node.
	client := fake.NewClientset(append(append([]runtime.Object{}, base...), lease("n1", time.Second, false), lease("n2", time.Second, false), lease("n3", time.Second, false))...)
	clk := clocktesting.NewFakePassiveClock(statusNow)
	r, err := collect(context.Background(), client, cfg, "", "baremetal-system", clk)
	if err != nil {
		t.Fatal(err)
	}
	owner := addr(r, "192.0.2.100")[0]
	other := map[string]string{"n2": "n3", "n3": "n2"}[owner]
	client = fake.NewClientset(append(append([]runtime.Object{}, base...), lease("n1", time.Second, false), lease(owner, time.Second, true), lease(other, time.Second, false))...)
	if r, err = collect(context.Background(), client, cfg, "", "baremetal-system", clk); err != nil {
		t.Fatal(err)
	}
	if got := addr(r, "192.0.2.100"); !slices.Equal(got, []string{other}) {
		t.Errorf("after %s leaves, the owner is %v, want %s", owner, got, other)
	}
}

func addr(r *Report, ip string) []string {
	for _, s := range r.Services {
		for _, a := range s.Addresses {
			if a.IP == ip {
				return a.AnnouncedBy
			}
		}
	}
	return nil
}

func TestStatusReport(t *testing.T) {
	cfg, err := config.Parse([]byte(statusConfig))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(node("n1", "r1"), lease("n1", time.Second, false),
		lbService("default", "web", false, "192.0.2.1"), lbService("default", "routed", false, "203.0.113.7"), lbService("default", "pending", false))
	r, err := collect(context.Background(), client, cfg, "", "baremetal-system", clocktesting.NewFakePassiveClock(statusNow))
	if err != nil {
		t.Fatal(err)
	}
	wantPools := []PoolUse{
		{Pool: "lan", Family: "IPv4", Size: "16", Used: 1}, {Pool: "lan", Family: "IPv6", Size: "256", Used: 0},
		{Pool: "rack2", Family: "IPv4", Size: "10", Used: 0}, {Pool: "routed", Family: "IPv4", Size: "256", Used: 1},
	}
	if !slices.Equal(r.Pools, wantPools) {
		t.Errorf("pools %+v\nwant  %+v", r.Pools, wantPools)
	}
	if n := r.Nodes[0]; !slices.Equal(n.Peers, []string{"tor-1"}) {
		t.Errorf("n1 peers %v, want tor-1 (its rack's)", n.Peers)
	}
	var out bytes.Buffer
	if err := r.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"default/pending  <pending>",
		"default/routed   203.0.113.7  routed  bgp     n1",
		"default/web      192.0.2.1    lan     layer2  n1",
		"lan     IPv6    0     256\n",
		"n1    running  tor-1\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, out.String())
		}
	}
	var back Report
	b, _ := json.Marshal(r)
	if err := json.Unmarshal(b, &back); err != nil || len(back.Services) != 3 {
		t.Errorf("json round trip: %v %+v", err, back)
	}
}
