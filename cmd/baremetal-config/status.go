package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// Where deploy/ keeps the agents' cloud-config.
const (
	defaultAgentNamespace = "baremetal-system"
	cloudConfigMap        = "baremetal-cloud-config"
)

type statusOptions struct {
	loading        *clientcmd.ClientConfigLoadingRules
	overrides      clientcmd.ConfigOverrides
	allNamespaces  bool
	agentNamespace string
	cloudConfig    string
	output         string
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{loading: clientcmd.NewDefaultClientConfigLoadingRules()}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every LoadBalancer Service, its pool and the nodes that announce it",
		Long: `Show, for every LoadBalancer Service, its pool, addresses and mode and the
node(s) announcing each address: the layer-2 owner as the agents elect it
(their planner, run on the same objects they read: Services, EndpointSlices,
Nodes and the agents' Leases), the BGP nodes and the peers each one has;
then the use of each pool per address family. It only reads.

The cloud-config is read from the ConfigMap ` + cloudConfigMap + ` in the agents'
namespace unless --cloud-config names a file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	clientcmd.BindOverrideFlags(&o.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
	fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Services of every namespace (the default unless -n is given)")
	fs.StringVar(&o.agentNamespace, "agent-namespace", defaultAgentNamespace, "namespace of the agents' Leases and their cloud-config ConfigMap")
	fs.StringVar(&o.cloudConfig, "cloud-config", "", "read the cloud-config from this file instead of the agents' ConfigMap")
	fs.StringVarP(&o.output, "output", "o", "", "output format: \"\" (tables) or json")
	return cmd
}

func (o *statusOptions) run(ctx context.Context, w io.Writer) error {
	if o.output != "" && o.output != "json" {
		return &exitError{code: exitUsage, err: fmt.Errorf("--output %q: use json, or leave it out for tables", o.output)}
	}
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loading, &o.overrides)
	rc, err := kc.ClientConfig()
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("loading the kubeconfig: %w", err)}
	}
	rc.UserAgent = "baremetal-config-status"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return &exitError{code: exitInvalid, err: err}
	}
	ns := ""
	if o.overrides.Context.Namespace != "" && !o.allNamespaces {
		ns = o.overrides.Context.Namespace
	}
	cfg, err := o.loadConfig(ctx, client)
	if err != nil {
		return &exitError{code: exitInvalid, err: err}
	}
	r, err := collect(ctx, client, cfg, ns, o.agentNamespace, clock.RealClock{})
	if err != nil {
		return &exitError{code: exitInvalid, err: err}
	}
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.print(w)
}

// loadConfig reads the cloud-config the agents read, with the same loader.
func (o *statusOptions) loadConfig(ctx context.Context, client kubernetes.Interface) (*config.Config, error) {
	if o.cloudConfig != "" {
		return config.Load(o.cloudConfig)
	}
	cm, err := client.CoreV1().ConfigMaps(o.agentNamespace).Get(ctx, cloudConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the agents' cloud-config (give --cloud-config FILE or --agent-namespace): %w", err)
	}
	for key, data := range cm.Data {
		if len(cm.Data) == 1 || holdsCloudConfig(data) {
			c, err := config.Parse([]byte(data))
			if err != nil {
				return nil, fmt.Errorf("ConfigMap %s/%s, data.%s: %w", cm.Namespace, cm.Name, key, err)
			}
			return c, nil
		}
	}
	return nil, fmt.Errorf("ConfigMap %s/%s holds no cloud-config", cm.Namespace, cm.Name)
}

// Report is what status shows; -o json writes it as is.
type Report struct {
	Services []ServiceStatus `json:"services"`
	Pools    []PoolUse       `json:"pools"`
	Nodes    []NodeStatus    `json:"nodes"`
}

// ServiceStatus is one LoadBalancer Service.
type ServiceStatus struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Addresses []AddressStatus `json:"addresses"`
	// Pending: no address in the status yet.
	Pending bool `json:"pending,omitempty"`
}

// AddressStatus is one address of a Service and who announces it.
type AddressStatus struct {
	IP   string `json:"ip"`
	Pool string `json:"pool,omitempty"` // empty: in no pool of the cloud-config
	Mode string `json:"mode,omitempty"`
	// AnnouncedBy: the layer-2 owner, or every node advertising over BGP.
	AnnouncedBy []string `json:"announcedBy"`
}

// PoolUse counts a pool's addresses of one family.
type PoolUse struct {
	Pool   string `json:"pool"`
	Family string `json:"family"`
	Size   string `json:"size"` // a decimal number: a /64 does not fit an int64
	Used   int    `json:"used"`
}

// NodeStatus is one node's agent as its Lease shows it.
type NodeStatus struct {
	Name  string `json:"name"`
	Agent string `json:"agent"` // running, leaving, lease expired, no agent
	// Peers are the BGP peers this node opens sessions to.
	Peers []string `json:"peers,omitempty"`
}

// collect reads the objects the agents read and runs their planner.
func collect(ctx context.Context, client kubernetes.Interface, cfg *config.Config, svcNamespace, agentNamespace string, clk clock.PassiveClock) (*Report, error) {
	svcList, err := client.CoreV1().Services(svcNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	nodeList, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	leaseList, err := client.CoordinationV1().Leases(agentNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the agents' Leases in %s: %w", agentNamespace, err)
	}
	var svcs []*v1.Service
	for i := range svcList.Items {
		if s := &svcList.Items[i]; s.Spec.Type == v1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil {
			svcs = append(svcs, s)
		}
	}
	ready, err := readyEndpoints(ctx, client, svcs)
	if err != nil {
		return nil, err
	}
	nodes := map[string]announce.NodeView{}
	for i := range nodeList.Items {
		n := announce.ViewOfNode(&nodeList.Items[i])
		nodes[n.Name] = n
	}
	members, agentState := agentMembers(leaseList.Items, clk.Now())
	vips := announce.BuildVIPs(cfg, svcs, func(key string) map[string]int { return ready[key] })

	// The planner of each member: the layer-2 owners are the same from
	// the point of view of every member eligible for the VIP (a planner
	// ranks only the VIPs its node could serve); the BGP advertisements
	// are its own.
	owners := map[netip.Addr]string{}
	bgpBy := map[netip.Addr][]string{}
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, self := range names {
		plan := announce.Decide(announce.PlanInput{
			Config: cfg, Self: self, SelfInfo: members[self], Nodes: nodes, VIPs: vips, Members: members, Now: clk.Now(),
		})
		for ip, o := range plan.Owners {
			if _, seen := owners[ip]; !seen || owners[ip] == "" {
				owners[ip] = o
			}
		}
		for _, ad := range plan.BGP {
			bgpBy[ad.VIP] = append(bgpBy[ad.VIP], self)
		}
	}

	r := &Report{}
	used := map[string]int{} // pool/family -> addresses in use
	for _, svc := range svcs {
		ss := ServiceStatus{Namespace: svc.Namespace, Name: svc.Name}
		for _, ip := range apicontract.IngressIPs(svc) {
			as := AddressStatus{IP: ip.String(), AnnouncedBy: []string{}}
			if v, ok := vips[ip]; ok {
				as.Pool, as.Mode = v.Pool.Name, string(v.Pool.Mode)
				if v.Pool.Mode == config.ModeBGP {
					as.AnnouncedBy = append(as.AnnouncedBy, bgpBy[ip]...)
				} else if o := owners[ip]; o != "" {
					as.AnnouncedBy = append(as.AnnouncedBy, o)
				}
			}
			ss.Addresses = append(ss.Addresses, as)
		}
		ss.Pending = len(ss.Addresses) == 0
		r.Services = append(r.Services, ss)
	}
	for ip, v := range vips {
		used[v.Pool.Name+"/"+family(ip)]++
	}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		for _, fam := range []string{"IPv4", "IPv6"} {
			size := new(big.Int)
			for _, rg := range p.Ranges {
				if family(rg.First) == fam {
					size.Add(size, rangeSize(rg))
				}
			}
			if size.Sign() > 0 {
				r.Pools = append(r.Pools, PoolUse{Pool: p.Name, Family: fam, Size: size.String(), Used: used[p.Name+"/"+fam]})
			}
		}
	}
	for _, n := range nodeList.Items {
		ns := NodeStatus{Name: n.Name, Agent: agentState[n.Name]}
		if ns.Agent == "" {
			ns.Agent = "no agent"
		}
		for _, peer := range cfg.BGP.Peers {
			if peer.AdmitsNode(n.Labels) && usesPeer(cfg, peer.Name) {
				ns.Peers = append(ns.Peers, peer.Name)
			}
		}
		r.Nodes = append(r.Nodes, ns)
	}
	sort.Slice(r.Services, func(i, j int) bool {
		a, b := r.Services[i], r.Services[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].Name < r.Nodes[j].Name })
	return r, nil
}

// agentMembers returns the agents the planner counts (a Lease neither
// leaving nor expired) and a word on every agent with a Lease. An expired
// Lease is left out: the agents take its addresses over once a probe finds
// nobody answering, which status cannot do, so it says "lease expired".
func agentMembers(leases []coordinationv1.Lease, now time.Time) (map[string]announce.AgentInfo, map[string]string) {
	members := map[string]announce.AgentInfo{}
	state := map[string]string{}
	for i := range leases {
		l := &leases[i]
		node, ok := strings.CutPrefix(l.Name, announce.LeasePrefix)
		if !ok {
			continue
		}
		leaving, info := announce.LeaseInfo(l)
		switch {
		case leaving:
			state[node] = "leaving"
		case leaseExpired(l, now):
			state[node] = "lease expired"
		default:
			state[node] = "running"
			members[node] = info
		}
	}
	return members, state
}

func leaseExpired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// readyEndpoints counts ready endpoints per node for each Service, as the
// agents do for externalTrafficPolicy: Local and BGP weights.
func readyEndpoints(ctx context.Context, client kubernetes.Interface, svcs []*v1.Service) (map[string]map[string]int, error) {
	out := map[string]map[string]int{}
	namespaces := map[string]bool{}
	for _, s := range svcs {
		namespaces[s.Namespace] = true
	}
	for ns := range namespaces {
		list, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing EndpointSlices in %s: %w", ns, err)
		}
		for i := range list.Items {
			s := &list.Items[i]
			svc := s.Labels[discoveryv1.LabelServiceName]
			if svc == "" {
				continue
			}
			key := s.Namespace + "/" + svc
			for _, ep := range s.Endpoints {
				if ep.NodeName == nil || ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				if out[key] == nil {
					out[key] = map[string]int{}
				}
				out[key][*ep.NodeName]++
			}
		}
	}
	return out, nil
}

// usesPeer reports whether some bgp pool advertises to the peer.
func usesPeer(cfg *config.Config, peer string) bool {
	for i := range cfg.Pools {
		if p := &cfg.Pools[i]; p.Mode == config.ModeBGP && slices.Contains(cfg.PeerNames(p), peer) {
			return true
		}
	}
	return false
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func rangeSize(r ipam.Range) *big.Int {
	first := new(big.Int).SetBytes(r.First.AsSlice())
	last := new(big.Int).SetBytes(r.Last.AsSlice())
	return last.Sub(last, first).Add(last, big.NewInt(1))
}

func (r *Report) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tADDRESS\tPOOL\tMODE\tANNOUNCED BY")
	for _, s := range r.Services {
		name := s.Namespace + "/" + s.Name
		if s.Pending {
			fmt.Fprintf(tw, "%s\t<pending>\t\t\t\n", name)
		}
		for _, a := range s.Addresses {
			pool, mode, by := a.Pool, a.Mode, strings.Join(a.AnnouncedBy, ",")
			if pool == "" {
				pool, mode = "<none>", "-"
			}
			if by == "" {
				by = "<nobody>"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, a.IP, pool, mode, by)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPOOL\tFAMILY\tUSED\tSIZE")
	for _, p := range r.Pools {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.Pool, p.Family, p.Used, p.Size)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tAGENT\tBGP PEERS")
	for _, n := range r.Nodes {
		peers := strings.Join(n.Peers, ",")
		if peers == "" {
			peers = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Name, n.Agent, peers)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "BGP session state is not published by the agents; see %s on each agent's /metrics.\n", bgp.MetricSessionUp)
	return err
}
