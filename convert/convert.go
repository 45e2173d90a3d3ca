// Package convert turns MetalLB configuration into a baremetal cloud-config.
//
// It reads both of MetalLB's formats, the legacy ConfigMap (`config` key with
// address-pools, peers, bgp-communities) and the metallb.io CRDs
// (IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, Community), and
// writes one cloud-config that config.Parse accepts. What the cloud-config
// cannot express is never dropped silently: every loss is a Note.
package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Source is one input file.
type Source struct {
	Name string // shown in notes and errors, e.g. the file path
	Data []byte
}

// Note is something in the input that the output does not carry over, or
// carries over differently; a person should read it before using the output.
type Note struct {
	Object  string // the MetalLB object or field it is about, e.g. `BGPPeer "tor-a"`
	Message string
}

func (n Note) String() string { return n.Object + ": " + n.Message }

// Result is a converted cloud-config.
type Result struct {
	// Config is the cloud-config YAML, notes included as a comment header.
	// config.Parse has accepted it.
	Config []byte
	// Notes lists what was not carried over, in input order.
	Notes []Note
}

// ErrNothingToConvert is returned when no input holds MetalLB configuration.
var ErrNothingToConvert = errors.New("no MetalLB configuration found (expected IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer or Community objects, or MetalLB's ConfigMap with a `config` key)")

// NamespacePlaceholder stands in for namespaces MetalLB chose by label
// selector, which the cloud-config cannot express: the output does not
// validate until a person lists the namespaces.
const NamespacePlaceholder = config.NamespacePlaceholder

// PasswordDir is where converted peers expect their TCP MD5 password files:
// the directory the deploy/ manifests mount the password Secret into.
const PasswordDir = "/etc/baremetal"

// FromMetalLB converts the MetalLB objects found in the sources. Inputs may
// hold several YAML documents and kube `List`s; objects of other kinds are
// skipped with a note. If the result does not validate, the error says why
// and Result still holds the YAML so it can be inspected.
func FromMetalLB(sources ...Source) (*Result, error) {
	c := &converter{communities: map[string]string{}, bfdProfiles: map[string]bfdProfileSpec{}}
	for _, s := range sources {
		if err := c.readSource(s); err != nil {
			return nil, err
		}
	}
	if len(c.pools) == 0 && len(c.peers) == 0 && len(c.l2Ads) == 0 && len(c.bgpAds) == 0 {
		return nil, ErrNothingToConvert
	}
	out := c.build()
	data, err := render(out, c.notes)
	if err != nil {
		return nil, err
	}
	res := &Result{Config: data, Notes: c.notes}
	if _, err := config.Parse(data); err != nil && !onlyPlaceholders(err) {
		return res, fmt.Errorf("the converted cloud-config is not valid, so the MetalLB input was not valid either or uses something baremetal cannot express: %w", err)
	}
	return res, nil
}

// onlyPlaceholders reports whether every finding is the namespace
// placeholder, which the output carries on purpose.
func onlyPlaceholders(err error) bool {
	var errs config.ValidationErrors
	if !errors.As(err, &errs) {
		return false
	}
	for _, e := range errs {
		if !errors.Is(e, config.ErrNamespacePlaceholder) {
			return false
		}
	}
	return true
}

// The converter's intermediate model: everything normalised to the CRD shapes.
type pool struct {
	src    string
	name   string
	labels map[string]string
	spec   ipAddressPoolSpec
}

type l2Ad struct {
	src  string
	spec l2AdvertisementSpec
}

type bgpAd struct {
	src  string
	spec bgpAdvertisementSpec
}

type peer struct {
	src       string
	name      string
	generated bool // legacy peers have no name; one is made from the address
	spec      bgpPeerSpec
}

type converter struct {
	pools       []pool
	l2Ads       []l2Ad
	bgpAds      []bgpAd
	peers       []peer
	communities map[string]string // Community names (CRD or legacy) to values
	bfdProfiles map[string]bfdProfileSpec
	notes       []Note
}

func (c *converter) note(object, format string, args ...any) {
	c.notes = append(c.notes, Note{Object: object, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) readSource(s Source) error {
	dec := yaml.NewDecoder(bytes.NewReader(s.Data))
	for i := 0; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d is not valid YAML: %w", s.Name, i+1, err)
		}
		if err := c.readNode(s.Name, &doc); err != nil {
			return fmt.Errorf("%s: document %d: %w", s.Name, i+1, err)
		}
	}
}

func (c *converter) readNode(file string, n *yaml.Node) error {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 0 {
		return nil // empty document, e.g. a trailing "---"
	}
	var obj object
	if err := n.Decode(&obj); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if obj.Kind == "" {
		// A bare legacy config, as stored under the ConfigMap's `config` key.
		var lc legacyConfig
		if err := n.Decode(&lc); err != nil {
			return fmt.Errorf("neither a Kubernetes object nor a MetalLB config: %w", err)
		}
		c.noteUnknown(file, "", n, reflect.TypeOf(lc))
		c.readLegacy(file, lc)
		return nil
	}
	ref := fmt.Sprintf("%s %q", obj.Kind, obj.Metadata.Name)
	group, _, _ := strings.Cut(obj.APIVersion, "/")
	if obj.Kind == "List" {
		for i := range obj.Items {
			if err := c.readNode(file, &obj.Items[i]); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
		return nil
	}
	if obj.Kind == "ConfigMap" {
		cfg, ok := obj.Data["config"]
		if !ok {
			c.note(ref, "skipped: a ConfigMap without a `config` key is not MetalLB configuration")
			return nil
		}
		var cn yaml.Node
		var lc legacyConfig
		if err := yaml.Unmarshal([]byte(cfg), &cn); err != nil {
			return fmt.Errorf("%s: data.config is not valid YAML: %w", ref, err)
		}
		if err := cn.Decode(&lc); err != nil {
			return fmt.Errorf("%s: data.config is not a MetalLB config: %w", ref, err)
		}
		c.noteUnknown(ref, "data.config", &cn, reflect.TypeOf(lc))
		c.readLegacy(ref, lc)
		return nil
	}
	if group != "metallb.io" {
		c.note(ref, "skipped: %s is not MetalLB configuration", obj.APIVersion)
		return nil
	}
	var err error
	switch obj.Kind {
	case "IPAddressPool":
		var spec ipAddressPoolSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.pools = append(c.pools, pool{src: ref, name: obj.Metadata.Name, labels: obj.Metadata.Labels, spec: spec})
		}
	case "L2Advertisement":
		var spec l2AdvertisementSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.l2Ads = append(c.l2Ads, l2Ad{src: ref, spec: spec})
		}
	case "BGPAdvertisement":
		var spec bgpAdvertisementSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.bgpAds = append(c.bgpAds, bgpAd{src: ref, spec: spec})
		}
	case "BGPPeer":
		var spec bgpPeerSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.peers = append(c.peers, peer{src: ref, name: obj.Metadata.Name, spec: spec})
		}
	case "Community":
		var spec communitySpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			for _, cm := range spec.Communities {
				c.communities[cm.Name] = cm.Value
			}
		}
	case "AddressPool":
		// The CRD of MetalLB v0.12-v0.13, deprecated since v0.13: the legacy
		// pool shape with camelCase fields.
		var spec addressPoolSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.addProtocolPool(ref, "bgpAdvertisements", spec.legacy(obj.Metadata.Name))
		}
	case "BFDProfile":
		var spec bfdProfileSpec
		if err = c.decodeSpec(ref, &obj.Spec, &spec); err == nil {
			c.addBFDProfile(ref, obj.Metadata.Name, spec)
		}
	default:
		c.note(ref, "skipped: kind %s is not converted", obj.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: spec: %w", ref, err)
	}
	return nil
}

// decodeSpec decodes an optional spec: an advertisement with no spec at all
// is valid MetalLB ("advertise every pool from every node"). Settings the
// converter does not know are noted, never dropped silently.
func (c *converter) decodeSpec(ref string, n *yaml.Node, into any) error {
	if n.Kind == 0 {
		return nil
	}
	if err := n.Decode(into); err != nil {
		return err
	}
	c.noteUnknown(ref, "spec", n, reflect.TypeOf(into).Elem())
	return nil
}

// noteUnknown notes every key under n that type t (a MetalLB shape the
// converter reads) does not declare: a setting newer than the converter,
// or one it has no use for, must still reach the person reviewing.
func (c *converter) noteUnknown(ref, path string, n *yaml.Node, t reflect.Type) {
	for n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else {
			n = n.Content[0]
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			c.noteUnknown(ref, fmt.Sprintf("%s[%d]", path, i), item, t.Elem())
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && t != reflect.TypeOf(yaml.Node{}):
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			p := key
			if path != "" {
				p = path + "." + key
			}
			f, ok := fieldByYAMLName(t, key)
			if !ok {
				c.note(ref, "%s not carried over: the converter does not know this setting; check whether the cloud-config needs an equivalent", p)
				continue
			}
			c.noteUnknown(ref, p, n.Content[i+1], f.Type)
		}
	}
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// readLegacy maps the legacy format onto the CRD model: each pool gets an
// advertisement of its protocol naming only that pool, as MetalLB v0.13's own
// migration does.
func (c *converter) readLegacy(ref string, lc legacyConfig) {
	for name, value := range lc.BGPCommunities {
		c.communities[name] = value
	}
	for i, p := range lc.Peers {
		var sels []labelSelector
		for _, s := range p.NodeSelectors {
			sels = append(sels, s.crd())
		}
		c.peers = append(c.peers, peer{
			src:       fmt.Sprintf("%s peers[%d]", ref, i),
			name:      "peer-" + p.Addr,
			generated: true,
			spec: bgpPeerSpec{
				MyASN: p.MyASN, ASN: p.ASN, Address: p.Addr, SrcAddress: p.SrcAddr, Port: p.Port,
				HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime, RouterID: p.RouterID,
				NodeSelectors: sels, Password: p.Password, BFDProfile: p.BFDProfile, EBGPMultiHop: p.EBGPMultiHop,
			},
		})
	}
	for i, p := range lc.Pools {
		c.addProtocolPool(fmt.Sprintf("%s address-pools[%d] %q", ref, i, p.Name), "bgp-advertisements", p)
	}
	for _, b := range lc.BFDProfiles {
		c.addBFDProfile(fmt.Sprintf("%s bfd-profiles %q", ref, b.Name), b.Name, b.crd())
	}
}

// addBFDProfile keeps a profile for the peers that name it, noting once
// what of it a peer's bfd section cannot hold.
func (c *converter) addBFDProfile(src, name string, p bfdProfileSpec) {
	c.bfdProfiles[name] = p
	for _, f := range []struct {
		field string
		set   bool
	}{{"echoMode", p.EchoMode}, {"echoInterval", p.EchoInterval != nil}, {"passiveMode", p.PassiveMode}, {"minimumTtl", p.MinimumTTL != nil}} {
		if f.set {
			c.note(src, "%s not carried over: baremetal runs BFD in asynchronous mode, actively, with the peers' bfd timers only", f.field)
		}
	}
}

// addProtocolPool adds a pool that names its own protocol (the legacy
// ConfigMap's address-pools and the deprecated AddressPool kind) together
// with the advertisement that protocol implies.
func (c *converter) addProtocolPool(src, advField string, p legacyPool) {
	c.pools = append(c.pools, pool{src: src, name: p.Name, spec: ipAddressPoolSpec{
		Addresses: p.Addresses, AutoAssign: p.AutoAssign, AvoidBuggyIPs: p.AvoidBuggyIPs,
	}})
	switch p.Protocol {
	case "bgp":
		if len(p.BGPAdvertisements) == 0 {
			c.bgpAds = append(c.bgpAds, bgpAd{src: src, spec: bgpAdvertisementSpec{IPAddressPools: []string{p.Name}}})
		}
		for j, a := range p.BGPAdvertisements {
			c.bgpAds = append(c.bgpAds, bgpAd{
				src: fmt.Sprintf("%s %s[%d]", src, advField, j),
				spec: bgpAdvertisementSpec{
					AggregationLength: a.AggregationLength, AggregationLengthV6: a.AggregationLengthV6,
					LocalPref: a.LocalPref, Communities: a.Communities, IPAddressPools: []string{p.Name},
				},
			})
		}
	case "layer2", "l2":
		c.l2Ads = append(c.l2Ads, l2Ad{src: src, spec: l2AdvertisementSpec{IPAddressPools: []string{p.Name}}})
	default:
		c.note(src, "protocol %q is neither layer2 nor bgp", p.Protocol)
	}
}
