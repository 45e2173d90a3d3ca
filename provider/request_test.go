package provider

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

const requestConfig = `
pools:
  - name: lan
    addresses: [192.0.2.0/28, "2001:db8::/120"]
  - name: team
    addresses: [198.51.100.0/28]
    namespaces: [team-a]
    serviceSelector: {matchLabels: {expose: public}}
topology:
  - {cidr: 203.0.113.0/26, zone: rack-1, region: dc-1}
`

func mustConfig(t *testing.T, s string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRequestFor(t *testing.T) {
	cfg := mustConfig(t, requestConfig)
	dual := v1.IPFamilyPolicyRequireDualStack
	tests := []struct {
		name    string
		svc     *v1.Service
		check   func(t *testing.T, r ipam.Request)
		wantErr string
	}{{
		name: "defaults to IPv4 single stack",
		svc:  lbService("s"),
		check: func(t *testing.T, r ipam.Request) {
			if r.Key != "default/s" || !reflect.DeepEqual(r.Families, []ipam.Family{ipam.IPv4}) || r.Policy != ipam.SingleStack {
				t.Errorf("got %+v", r)
			}
		},
	}, {
		name: "dual stack families in order",
		svc: lbService("s", func(s *v1.Service) {
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = &dual
		}),
		check: func(t *testing.T, r ipam.Request) {
			if !reflect.DeepEqual(r.Families, []ipam.Family{ipam.IPv6, ipam.IPv4}) || r.Policy != ipam.RequireDualStack {
				t.Errorf("got %+v", r)
			}
		},
	}, {
		name: "our annotations win over MetalLB's",
		svc: lbService("s", func(s *v1.Service) {
			s.Annotations = map[string]string{
				AnnotationPool: "lan", "metallb.universe.tf/address-pool": "team",
				AnnotationLoadBalancerIPs: "192.0.2.3, 2001:db8::3", "metallb.io/loadBalancerIPs": "192.0.2.4",
			}
			s.Spec.LoadBalancerIP = "192.0.2.5"
		}),
		check: func(t *testing.T, r ipam.Request) {
			want := []netip.Addr{netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3")}
			if r.Pool != "lan" || !reflect.DeepEqual(r.IPs, want) {
				t.Errorf("got pool %q ips %v", r.Pool, r.IPs)
			}
		},
	}, {
		name: "MetalLB annotations as fallback",
		svc: lbService("s", func(s *v1.Service) {
			s.Annotations = map[string]string{"metallb.universe.tf/address-pool": "team",
				"metallb.universe.tf/loadBalancerIPs": "198.51.100.2", "metallb.universe.tf/allow-shared-ip": "k"}
		}),
		check: func(t *testing.T, r ipam.Request) {
			if r.Pool != "team" || r.IPs[0].String() != "198.51.100.2" || r.SharingKey != "k" {
				t.Errorf("got %+v", r)
			}
		},
	}, {
		name: "spec.loadBalancerIP",
		svc:  lbService("s", func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.0.2.9" }),
		check: func(t *testing.T, r ipam.Request) {
			if len(r.IPs) != 1 || r.IPs[0].String() != "192.0.2.9" {
				t.Errorf("got %v", r.IPs)
			}
		},
	}, {
		name: "ETP Local shares only with the same selector",
		svc: lbService("s", func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.Selector = map[string]string{"app": "web"}
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Port: 53, Protocol: v1.ProtocolUDP})
		}),
		check: func(t *testing.T, r ipam.Request) {
			if r.Backend != "app=web" {
				t.Errorf("backend %q", r.Backend)
			}
			if !reflect.DeepEqual(r.Ports, []ipam.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}) {
				t.Errorf("ports %v", r.Ports)
			}
		},
	}, {
		name: "namespace and selector restrictions",
		svc:  lbService("s", func(s *v1.Service) { s.Namespace = "team-a"; s.Labels = map[string]string{"expose": "public"} }),
		check: func(t *testing.T, r ipam.Request) {
			if !r.Admits("team") || !r.Admits("lan") || r.Admits("missing") {
				t.Error("admission wrong for a matching Service")
			}
		},
	}, {
		name: "selector mismatch",
		svc:  lbService("s", func(s *v1.Service) { s.Namespace = "team-a" }),
		check: func(t *testing.T, r ipam.Request) {
			if r.Admits("team") {
				t.Error("team admitted without the label")
			}
		},
	}, {
		name:    "unknown pool",
		svc:     lbService("s", func(s *v1.Service) { s.Annotations = map[string]string{AnnotationPool: "nope"} }),
		wantErr: `annotation baremetal.cloud-provider.io/pool names pool "nope", which is not in the cloud-config (pools: lan, team)`,
	}, {
		name:    "bad IP",
		svc:     lbService("s", func(s *v1.Service) { s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "192.0.2.300"} }),
		wantErr: `"192.0.2.300" is not an IP address`,
	}, {
		name:    "two of one family",
		svc:     lbService("s", func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.0.2.1,192.0.2.2" }),
		wantErr: "more than one IPv4 address",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := requestFor(cfg, tt.svc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestInstanceMetadata(t *testing.T) {
	cloud := New(mustConfig(t, requestConfig))
	inst, _ := cloud.InstancesV2()
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{cloudproviderapi.AnnotationAlphaProvidedIPAddr: "203.0.113.5,2001:db8::5"}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "203.0.113.5"}, {Type: v1.NodeExternalIP, Address: "192.0.2.77"}}},
	}
	md, err := inst.InstanceMetadata(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.NodeAddress{
		{Type: v1.NodeInternalIP, Address: "203.0.113.5"},
		{Type: v1.NodeInternalIP, Address: "2001:db8::5"},
		{Type: v1.NodeExternalIP, Address: "192.0.2.77"},
		{Type: v1.NodeHostName, Address: "n1"},
	}
	if md.ProviderID != "baremetal://n1" || md.Zone != "rack-1" || md.Region != "dc-1" || !reflect.DeepEqual(md.NodeAddresses, want) {
		t.Errorf("got %+v", md)
	}
	if ok, _ := inst.InstanceExists(t.Context(), node); !ok {
		t.Error("InstanceExists must be true")
	}
	if down, _ := inst.InstanceShutdown(t.Context(), node); down {
		t.Error("InstanceShutdown must be false")
	}
}
