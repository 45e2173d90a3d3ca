package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/component-base/term"
	"k8s.io/component-base/version/verflag"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/version"
)

// DefaultNamespace is where deploy/ runs the agents and keeps their Leases.
const DefaultNamespace = "baremetal-system"

type options struct {
	kubeconfig     string
	nodeName       string
	cloudConfig    string
	namespace      string
	metricsAddr    string
	healthAddr     string
	reloadInterval time.Duration
	heartbeatPort  int
	// heartbeatKeyFile replaces the Secret baremetal-node-agent-heartbeat.
	heartbeatKeyFile string
}

func (o *options) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration when empty.")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "Name of this node (default $NODE_NAME).")
	fs.StringVar(&o.cloudConfig, "cloud-config", "", "Path to the cloud-config file shared with the cloud-controller-manager.")
	fs.StringVar(&o.namespace, "namespace", DefaultNamespace, "Namespace of the agents' Leases and heartbeat key Secret (deploy/ sets it to the pod's own).")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9101", "Address to serve /metrics on; 0 disables.")
	fs.StringVar(&o.healthAddr, "health-bind-address", ":9102", "Address to serve /healthz and /readyz on; 0 disables.")
	fs.IntVar(&o.heartbeatPort, "heartbeat-port", 7474, "UDP port for the direct heartbeats between agents that detect a crashed owner in under a second; 0 disables them.")
	fs.StringVar(&o.heartbeatKeyFile, "heartbeat-key-file", "", "File holding the key that signs heartbeats (a mounted Secret's \"key\"; a \"previousKey\" file next to it is accepted too, for rotation). Default: the Secret baremetal-node-agent-heartbeat in --namespace, created when missing.")
	fs.DurationVar(&o.reloadInterval, "config-reload-interval", 10*time.Second, "How often to re-read the cloud-config file; 0 disables.")
}

// newCommand is the agent's command line: its own flags, component-base's
// logging flags (-v, --vmodule, --logging-format=text|json, ...) and
// --version. runAgent is called with the parsed options once logging is set
// up; tests pass their own.
func newCommand(runAgent func(options) error) *cobra.Command {
	o := &options{}
	logging := logsapi.NewLoggingConfiguration()
	cmd := &cobra.Command{
		Use:  "baremetal-node-agent",
		Long: "The node agent of cloud-provider-baremetal: makes the LoadBalancer addresses the cloud-controller-manager hands out reachable, by layer 2 (ARP/NDP) or BGP.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%q does not take arguments, got %q", cmd.CommandPath(), args)
			}
			return nil
		},
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			version.PrintAndExitIfRequested("baremetal-node-agent")
			if err := logsapi.ValidateAndApply(logging, nil); err != nil {
				return err
			}
			klog.InfoS("Starting baremetal-node-agent", "version", version.String())
			cliflag.PrintFlags(cmd.Flags())
			return runAgent(*o)
		},
	}
	fss := cliflag.NamedFlagSets{}
	o.addFlags(fss.FlagSet("agent"))
	logsapi.AddFlags(logging, fss.FlagSet("logs"))
	logs.AddFlags(fss.FlagSet("logs")) // --log-flush-frequency
	verflag.AddFlags(fss.FlagSet("global"))
	fs := cmd.Flags()
	for _, name := range fss.Order {
		fs.AddFlagSet(fss.FlagSets[name])
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}
