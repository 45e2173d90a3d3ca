package convert

// The cloud-config shapes the converter writes. They mirror config.Config
// but leave out empty fields, so the output reads like a hand-written file;
// config.Parse is the judge of whether it is right.

type outConfig struct {
	Pools []outPool `yaml:"pools,omitempty"`
	BGP   *outBGP   `yaml:"bgp,omitempty"`
}

type outPool struct {
	Name            string       `yaml:"name"`
	Addresses       []string     `yaml:"addresses"`
	Mode            string       `yaml:"mode"`
	AutoAssign      *bool        `yaml:"autoAssign,omitempty"`
	AvoidBuggyIPs   bool         `yaml:"avoidBuggyIPs,omitempty"`
	Namespaces      []string     `yaml:"namespaces,omitempty"`
	ServiceSelector *outSelector `yaml:"serviceSelector,omitempty"`
	NodeSelector    *outSelector `yaml:"nodeSelector,omitempty"`
	Interfaces      []string     `yaml:"interfaces,omitempty"`
	BGP             *outPoolBGP  `yaml:"bgp,omitempty"`
}

type outPoolBGP struct {
	Peers               []string `yaml:"peers,omitempty"`
	Communities         []string `yaml:"communities,omitempty"`
	LocalPref           *uint32  `yaml:"localPref,omitempty"`
	AggregationLength   *int     `yaml:"aggregationLength,omitempty"`
	AggregationLengthV6 *int     `yaml:"aggregationLengthV6,omitempty"`
}

func (b *outPoolBGP) empty() bool {
	return len(b.Peers) == 0 && len(b.Communities) == 0 && b.LocalPref == nil &&
		b.AggregationLength == nil && b.AggregationLengthV6 == nil
}

type outBGP struct {
	ASN      uint32    `yaml:"asn"`
	RouterID string    `yaml:"routerID,omitempty"`
	Peers    []outPeer `yaml:"peers,omitempty"`
}

type outPeer struct {
	Name            string       `yaml:"name"`
	Address         string       `yaml:"address"`
	ASN             uint32       `yaml:"asn"`
	Port            uint16       `yaml:"port,omitempty"`
	PasswordFile    string       `yaml:"passwordFile,omitempty"`
	HoldTime        string       `yaml:"holdTime,omitempty"`
	KeepaliveTime   string       `yaml:"keepaliveTime,omitempty"`
	EBGPMultihop    uint8        `yaml:"ebgpMultihop,omitempty"`
	SourceAddress   string       `yaml:"sourceAddress,omitempty"`
	GracefulRestart bool         `yaml:"gracefulRestart,omitempty"`
	NodeSelector    *outSelector `yaml:"nodeSelector,omitempty"`
	LocalASN        uint32       `yaml:"localASN,omitempty"`
}

type outSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels,omitempty"`
	MatchExpressions []requirement     `yaml:"matchExpressions,omitempty"`
}

func selectorOut(s labelSelector) *outSelector {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return nil
	}
	return &outSelector{MatchLabels: s.MatchLabels, MatchExpressions: s.MatchExpressions}
}
