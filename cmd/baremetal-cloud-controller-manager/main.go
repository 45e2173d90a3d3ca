// Command baremetal-cloud-controller-manager is the Kubernetes cloud
// controller manager for bare metal: the standard k8s.io/cloud-provider
// command with the `baremetal` provider linked in.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // build info metric
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/version"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/provider"
)

// Defaults that differ from the framework's (1 service worker, QPS 20 /
// burst 30), which address about five Services a second. A Service costs the
// service controller two writes of its own (finalizer, status); its two
// events go through a client of their own (eventsApart). At 500 QPS that is
// 250 Services/s sustained and a burst of 1,000 Services within the bucket;
// 50 workers keep that pace with each sync waiting two round trips on a busy
// API server. API Priority and Fairness, not these numbers, is what
// protects the API server (docs/install.md, "API load"); measured in
// docs/benchmarks.md.
const (
	defaultConcurrentServiceSyncs = 50
	defaultKubeAPIQPS             = 500
	defaultKubeAPIBurst           = 1000
)

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot initialise options: %v\n", err)
		os.Exit(1)
	}
	opts.KubeCloudShared.CloudProvider.Name = provider.ProviderName
	opts.ServiceController.ConcurrentServiceSyncs = defaultConcurrentServiceSyncs
	opts.Generic.ClientConnection.QPS = defaultKubeAPIQPS
	opts.Generic.ClientConnection.Burst = defaultKubeAPIBurst

	command := app.NewCloudControllerManagerCommand(opts, initCloud, controllerInitializers(),
		names.CCMControllerAliases(), cliflag.NamedFlagSets{}, wait.NeverStop)
	if err := holdDefaults(command.Flags()); err != nil {
		fmt.Fprintf(os.Stderr, "cannot set flag defaults: %v\n", err)
		os.Exit(1)
	}
	run := command.RunE
	command.RunE = func(cmd *cobra.Command, args []string) error {
		version.PrintAndExitIfRequested(programName)
		return run(cmd, args)
	}
	os.Exit(cli.Run(command))
}

const programName = "baremetal-cloud-controller-manager"

// holdDefaults sets defaults that the framework's flag registration would
// overwrite: it registers --configure-cloud-routes with a literal true, not
// with the value in the options, so setting the option before building the
// command is lost. The flag's value and the default --help shows both change.
func holdDefaults(fs *pflag.FlagSet) error {
	for name, value := range map[string]string{
		// Pod routes are the CNI's business on bare metal.
		"configure-cloud-routes": "false",
	} {
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("the framework has no flag --%s", name)
		}
		if err := f.Value.Set(value); err != nil {
			return fmt.Errorf("--%s=%s: %w", name, value, err)
		}
		f.DefValue = value
	}
	return nil
}

// initCloud builds the provider. A bad cloud-config ends the process at once,
// naming every problem, before leader election or any controller starts.
func initCloud(c *cloudcontrollerconfig.CompletedConfig) cloudprovider.Interface {
	shared := c.ComponentConfig.KubeCloudShared.CloudProvider
	if shared.Name != provider.ProviderName {
		klog.Fatalf("--cloud-provider=%q: this binary only provides %q", shared.Name, provider.ProviderName)
	}
	cloud, err := cloudprovider.InitCloudProvider(shared.Name, shared.CloudConfigFile)
	if err != nil {
		klog.Fatalf("Invalid cloud-config: %v", err)
	}
	bm, ok := cloud.(*provider.Cloud)
	if !ok {
		klog.Fatalf("Cloud provider %q is not the baremetal provider", shared.Name)
	}
	if shared.CloudConfigFile != "" {
		bm.WatchConfigFile(shared.CloudConfigFile)
	}
	takeOverFromEarlierContainer(c)
	return bm
}
