package convert

import "gopkg.in/yaml.v3"

// The MetalLB shapes the converter reads. Only the fields that matter for the
// conversion (carried over or reported as lost) are declared; anything else
// in the input is ignored.

// object is any Kubernetes-style document in an input file.
type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
	Items      []yaml.Node       `yaml:"items"`
}

type objectMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

// labelSelector is metav1.LabelSelector as spelled in CRDs.
type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []requirement     `yaml:"matchExpressions"`
}

type requirement struct {
	Key      string   `yaml:"key"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values,omitempty"`
}

// metallb.io IPAddressPool (v1beta1).
type ipAddressPoolSpec struct {
	Addresses         []string           `yaml:"addresses"`
	AutoAssign        *bool              `yaml:"autoAssign"`
	AvoidBuggyIPs     bool               `yaml:"avoidBuggyIPs"`
	ServiceAllocation *serviceAllocation `yaml:"serviceAllocation"`
}

type serviceAllocation struct {
	Priority           *int            `yaml:"priority"`
	Namespaces         []string        `yaml:"namespaces"`
	NamespaceSelectors []labelSelector `yaml:"namespaceSelectors"`
	ServiceSelectors   []labelSelector `yaml:"serviceSelectors"`
}

// metallb.io L2Advertisement (v1beta1).
type l2AdvertisementSpec struct {
	IPAddressPools         []string        `yaml:"ipAddressPools"`
	IPAddressPoolSelectors []labelSelector `yaml:"ipAddressPoolSelectors"`
	NodeSelectors          []labelSelector `yaml:"nodeSelectors"`
	Interfaces             []string        `yaml:"interfaces"`
}

// metallb.io BGPAdvertisement (v1beta1).
type bgpAdvertisementSpec struct {
	AggregationLength      *int            `yaml:"aggregationLength"`
	AggregationLengthV6    *int            `yaml:"aggregationLengthV6"`
	LocalPref              uint32          `yaml:"localPref"`
	Communities            []string        `yaml:"communities"`
	IPAddressPools         []string        `yaml:"ipAddressPools"`
	IPAddressPoolSelectors []labelSelector `yaml:"ipAddressPoolSelectors"`
	NodeSelectors          []labelSelector `yaml:"nodeSelectors"`
	Peers                  []string        `yaml:"peers"`
}

// metallb.io BGPPeer, v1beta1 and v1beta2 (v1beta2 is a superset).
type bgpPeerSpec struct {
	MyASN                  uint32          `yaml:"myASN"`
	ASN                    uint32          `yaml:"peerASN"`
	DynamicASN             string          `yaml:"dynamicASN"`
	Address                string          `yaml:"peerAddress"`
	Interface              string          `yaml:"interface"`
	SrcAddress             string          `yaml:"sourceAddress"`
	Port                   uint16          `yaml:"peerPort"`
	HoldTime               string          `yaml:"holdTime"`
	KeepaliveTime          string          `yaml:"keepaliveTime"`
	ConnectTime            string          `yaml:"connectTime"`
	RouterID               string          `yaml:"routerID"`
	NodeSelectors          []labelSelector `yaml:"nodeSelectors"`
	Password               string          `yaml:"password"`
	PasswordSecret         secretRef       `yaml:"passwordSecret"`
	BFDProfile             string          `yaml:"bfdProfile"`
	EnableGracefulRestart  bool            `yaml:"enableGracefulRestart"`
	EBGPMultiHop           bool            `yaml:"ebgpMultiHop"`
	VRFName                string          `yaml:"vrf"`
	DisableMP              bool            `yaml:"disableMP"`
	DualStackAddressFamily bool            `yaml:"dualStackAddressFamily"`
}

// metallb.io BFDProfile (v1beta1); intervals in milliseconds.
type bfdProfileSpec struct {
	ReceiveInterval  *uint32 `yaml:"receiveInterval"`
	TransmitInterval *uint32 `yaml:"transmitInterval"`
	DetectMultiplier *uint32 `yaml:"detectMultiplier"`
	EchoInterval     *uint32 `yaml:"echoInterval"`
	EchoMode         bool    `yaml:"echoMode"`
	PassiveMode      bool    `yaml:"passiveMode"`
	MinimumTTL       *uint32 `yaml:"minimumTtl"`
}

// The legacy ConfigMap's bfd-profiles entry.
type legacyBFDProfile struct {
	Name             string  `yaml:"name"`
	ReceiveInterval  *uint32 `yaml:"receive-interval"`
	TransmitInterval *uint32 `yaml:"transmit-interval"`
	DetectMultiplier *uint32 `yaml:"detect-multiplier"`
	EchoInterval     *uint32 `yaml:"echo-interval"`
	EchoMode         bool    `yaml:"echo-mode"`
	PassiveMode      bool    `yaml:"passive-mode"`
	MinimumTTL       *uint32 `yaml:"minimum-ttl"`
}

func (b legacyBFDProfile) crd() bfdProfileSpec {
	return bfdProfileSpec{
		ReceiveInterval: b.ReceiveInterval, TransmitInterval: b.TransmitInterval, DetectMultiplier: b.DetectMultiplier,
		EchoInterval: b.EchoInterval, EchoMode: b.EchoMode, PassiveMode: b.PassiveMode, MinimumTTL: b.MinimumTTL,
	}
}

type secretRef struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

// metallb.io Community (v1beta1).
type communitySpec struct {
	Communities []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"communities"`
}

// legacyConfig is the `config` key of MetalLB's ConfigMap (v0.12 and older).
type legacyConfig struct {
	Peers          []legacyPeer       `yaml:"peers"`
	BGPCommunities map[string]string  `yaml:"bgp-communities"`
	Pools          []legacyPool       `yaml:"address-pools"`
	BFDProfiles    []legacyBFDProfile `yaml:"bfd-profiles"`
}

type legacyPeer struct {
	MyASN         uint32           `yaml:"my-asn"`
	ASN           uint32           `yaml:"peer-asn"`
	Addr          string           `yaml:"peer-address"`
	SrcAddr       string           `yaml:"source-address"`
	Port          uint16           `yaml:"peer-port"`
	HoldTime      string           `yaml:"hold-time"`
	KeepaliveTime string           `yaml:"keepalive-time"`
	RouterID      string           `yaml:"router-id"`
	NodeSelectors []legacySelector `yaml:"node-selectors"`
	Password      string           `yaml:"password"`
	BFDProfile    string           `yaml:"bfd-profile"`
	EBGPMultiHop  bool             `yaml:"ebgp-multihop"`
}

type legacySelector struct {
	MatchLabels      map[string]string `yaml:"match-labels"`
	MatchExpressions []requirement     `yaml:"match-expressions"`
}

type legacyPool struct {
	Name              string         `yaml:"name"`
	Protocol          string         `yaml:"protocol"`
	Addresses         []string       `yaml:"addresses"`
	AutoAssign        *bool          `yaml:"auto-assign"`
	AvoidBuggyIPs     bool           `yaml:"avoid-buggy-ips"`
	BGPAdvertisements []legacyBGPAdv `yaml:"bgp-advertisements"`
}

type legacyBGPAdv struct {
	AggregationLength   *int     `yaml:"aggregation-length"`
	AggregationLengthV6 *int     `yaml:"aggregation-length-v6"`
	LocalPref           uint32   `yaml:"localpref"`
	Communities         []string `yaml:"communities"`
}

func (s legacySelector) crd() labelSelector {
	return labelSelector{MatchLabels: s.MatchLabels, MatchExpressions: s.MatchExpressions}
}

// metallb.io AddressPool (v1alpha1/v1beta1, deprecated).
type addressPoolSpec struct {
	Protocol          string   `yaml:"protocol"`
	Addresses         []string `yaml:"addresses"`
	AutoAssign        *bool    `yaml:"autoAssign"`
	AvoidBuggyIPs     bool     `yaml:"avoidBuggyIPs"`
	BGPAdvertisements []struct {
		AggregationLength   *int     `yaml:"aggregationLength"`
		AggregationLengthV6 *int     `yaml:"aggregationLengthV6"`
		LocalPref           uint32   `yaml:"localPref"`
		Communities         []string `yaml:"communities"`
	} `yaml:"bgpAdvertisements"`
}

func (s addressPoolSpec) legacy(name string) legacyPool {
	p := legacyPool{Name: name, Protocol: s.Protocol, Addresses: s.Addresses, AutoAssign: s.AutoAssign, AvoidBuggyIPs: s.AvoidBuggyIPs}
	for _, a := range s.BGPAdvertisements {
		p.BGPAdvertisements = append(p.BGPAdvertisements, legacyBGPAdv{
			AggregationLength: a.AggregationLength, AggregationLengthV6: a.AggregationLengthV6,
			LocalPref: a.LocalPref, Communities: a.Communities,
		})
	}
	return p
}
