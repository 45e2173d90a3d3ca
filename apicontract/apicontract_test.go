package apicontract

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestIngressIPs(t *testing.T) {
	svc := &v1.Service{Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{
		{IP: "192.0.2.1"}, {Hostname: "lb.example.com"}, {IP: "::ffff:192.0.2.2"}, {IP: "2001:db8::1"},
	}}}}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	if got := IngressIPs(svc); !slices.Equal(got, want) {
		t.Errorf("IngressIPs = %v, want %v", got, want)
	}
}
