package provider

import (
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// ConfigPollInterval is how often the cloud-config file is checked
// (config.Watch says how).
const ConfigPollInterval = 2 * time.Second

var (
	reloadFailures = metrics.NewCounter(&metrics.CounterOpts{
		Name:           config.MetricReloadFailures,
		Help:           "Cloud-config reloads refused because the new file was invalid.",
		StabilityLevel: metrics.ALPHA,
	})
	reloadSuccess = metrics.NewGauge(&metrics.GaugeOpts{
		Name:           config.MetricReloadSuccess,
		Help:           "1 if the cloud-config file on disk is the one in force, 0 if the last change was refused.",
		StabilityLevel: metrics.ALPHA,
	})
)

func init() {
	legacyregistry.MustRegister(reloadFailures, reloadSuccess)
	reloadSuccess.Set(1)
}

// WatchConfigFile makes the provider follow changes to the cloud-config file
// at path once it leads. Call it right after building the provider from that
// file: what is there now is taken as the config in force.
func (c *Cloud) WatchConfigFile(path string) {
	c.configWatch = config.NewWatch(path)
}

// watchConfig follows the file until stop. The first check runs at once, so
// a replica that waited long as a standby leads with the current file.
func (c *Cloud) watchConfig(stop <-chan struct{}) {
	if c.configWatch == nil {
		return
	}
	c.configWatch.Run(contextFrom(stop), ConfigPollInterval, nil, c.applyConfig)
}

// applyConfig installs a changed file, or records why it was refused. An
// invalid file changes nothing; a valid one never moves an address in use
// (decision 1).
func (c *Cloud) applyConfig(cfg *config.Config, err error) {
	path := c.configWatch.Path()
	if err != nil {
		reloadFailures.Inc()
		reloadSuccess.Set(0)
		klog.ErrorS(err, "Refusing the changed cloud-config; the previous one stays in force", "path", path)
		c.recorder.Eventf(c.eventTarget(), v1.EventTypeWarning, apicontract.ReasonInvalidConfig,
			"The changed cloud-config %s was refused and the previous one stays in force: %v", path, err)
		return
	}
	reloadSuccess.Set(1)
	orphans := c.alloc.SetPools(cfg.IPAMPools())
	c.cfg.Store(cfg)
	klog.InfoS("Applied the changed cloud-config", "path", path, "pools", len(cfg.Pools), "orphanedAddresses", len(orphans))
	c.warnOrphans(orphans)
	c.addressesFreed() // a pool may have grown
}

// warnOrphans tells the owners of addresses that left every pool that they
// keep them, as a Warning event on each Service.
func (c *Cloud) warnOrphans(orphans []ipam.Orphan) {
	if len(orphans) == 0 || c.services == nil {
		return
	}
	byKey := map[string][]string{}
	for _, o := range orphans {
		byKey[o.Key] = append(byKey[o.Key], o.IP.String())
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return
	}
	for _, svc := range svcs {
		if ips, ok := byKey[serviceKey(svc)]; ok {
			c.recorder.Eventf(svc, v1.EventTypeWarning, apicontract.ReasonOrphanedAddress,
				"Address %v is no longer in any configured pool; the Service keeps it until it is deleted or asks for another", ips)
		}
	}
}

// eventTarget is what config events are attached to: the controller
// manager's leader-election Lease, where an operator looks for CCM trouble.
func (c *Cloud) eventTarget() *v1.ObjectReference {
	return &v1.ObjectReference{
		Kind: "Lease", APIVersion: "coordination.k8s.io/v1",
		Namespace: metav1.NamespaceSystem, Name: "cloud-controller-manager",
	}
}
