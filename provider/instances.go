package provider

import (
	"context"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
)

// ProviderIDPrefix starts every node's spec.providerID.
const ProviderIDPrefix = ProviderName + "://"

// instances is the Cloud seen as cloudprovider.InstancesV2.
type instances Cloud

var _ cloudprovider.InstancesV2 = (*instances)(nil)

// InstanceExists is always true: a bare-metal machine cannot be asked whether
// it still exists, and false would let the lifecycle controller delete the
// Node of a machine that is merely powered off.
func (i *instances) InstanceExists(ctx context.Context, node *v1.Node) (bool, error) {
	return true, nil
}

// InstanceShutdown is always false, for the same reason.
func (i *instances) InstanceShutdown(ctx context.Context, node *v1.Node) (bool, error) {
	return false, nil
}

// InstanceMetadata initialises a node: provider ID, addresses (including the
// kubelet's --node-ip) and zone/region from the topology rules.
func (i *instances) InstanceMetadata(ctx context.Context, node *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	addrs := nodeAddresses(node)
	md := &cloudprovider.InstanceMetadata{
		ProviderID:    ProviderIDPrefix + node.Name,
		InstanceType:  "baremetal",
		NodeAddresses: addrs,
	}
	cfg := (*Cloud)(i).cfg.Load()
	for _, a := range addrs {
		if a.Type != v1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		if zone, region, ok := cfg.TopologyFor(ip); ok {
			md.Zone, md.Region = zone, region
			break
		}
	}
	return md, nil
}

// nodeAddresses keeps what the node reports, puts the kubelet's provided
// --node-ip first as InternalIP, and makes sure a Hostname is present.
func nodeAddresses(node *v1.Node) []v1.NodeAddress {
	var out []v1.NodeAddress
	seen := map[v1.NodeAddress]bool{}
	add := func(a v1.NodeAddress) {
		if a.Address == "" || seen[a] {
			return
		}
		seen[a] = true
		out = append(out, a)
	}
	if provided, ok := node.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr]; ok {
		for _, s := range strings.Split(provided, ",") {
			if ip, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
				add(v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip.String()})
			}
		}
	}
	hasHostname := false
	for _, a := range node.Status.Addresses {
		add(a)
		hasHostname = hasHostname || a.Type == v1.NodeHostName
	}
	if !hasHostname {
		add(v1.NodeAddress{Type: v1.NodeHostName, Address: node.Name})
	}
	return out
}
