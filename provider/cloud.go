// Package provider is the `baremetal` cloud provider: LoadBalancer hands out
// addresses from the cloud-config's pools, InstancesV2 initialises nodes.
package provider

import (
	"context"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// ProviderName is the value of --cloud-provider that selects us.
const ProviderName = "baremetal"

func init() {
	cloudprovider.RegisterCloudProvider(ProviderName, func(r io.Reader) (cloudprovider.Interface, error) {
		if r == nil { // no --cloud-config: no pools, nodes are still initialised
			return New(config.Default()), nil
		}
		cfg, err := config.Read(r)
		if err != nil {
			return nil, err
		}
		return New(cfg), nil
	})
}

// Cloud implements cloudprovider.Interface.
type Cloud struct {
	cfg   atomic.Pointer[config.Config]
	alloc *ipam.Allocator

	// seeded is closed once IPAM holds every address recorded in Service
	// statuses; until then nothing is allocated (decision 1).
	seeded   chan struct{}
	seedOnce sync.Once
	// leading is set by Initialize, which the framework calls only on the
	// replica that holds the leader lease; standbys export no pool gauges.
	leading atomic.Bool

	// Services waiting for an address, and how they are handed one as soon
	// as it frees (handover.go).
	waiting waitList
	freed   chan struct{}
	requeue atomic.Pointer[func(*v1.Service)]

	// informersSet is closed by SetInformers, which the framework calls
	// after Initialize.
	informersSet chan struct{}
	services     corelisters.ServiceLister
	synced       cache.InformerSynced
	recorder     record.EventRecorder

	configWatch *config.Watch // the cloud-config file followed; see WatchConfigFile
}

var (
	_ cloudprovider.Interface    = (*Cloud)(nil)
	_ cloudprovider.InformerUser = (*Cloud)(nil)
)

// New returns a provider for cfg. Allocation waits for Initialize and
// SetInformers (or Seed in tests).
func New(cfg *config.Config) *Cloud {
	c := &Cloud{
		alloc:        ipam.New(cfg.IPAMPools()),
		seeded:       make(chan struct{}),
		informersSet: make(chan struct{}),
		freed:        make(chan struct{}, 1),
		recorder:     &record.FakeRecorder{},
	}
	c.cfg.Store(cfg)
	registerMetrics(c)
	return c
}

// Config returns the configuration in force.
func (c *Cloud) Config() *config.Config { return c.cfg.Load() }

// Initialize runs once this replica leads: it sets up events and starts
// seeding IPAM as soon as the Service informer has synced.
func (c *Cloud) Initialize(clientBuilder cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	c.leading.Store(true)
	client, err := clientBuilder.Client("baremetal-cloud-provider")
	if err != nil {
		klog.ErrorS(err, "Cannot build a client; events from the provider will be lost")
	} else {
		broadcaster := record.NewBroadcaster(record.WithContext(contextFrom(stop)))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "baremetal-cloud-provider"})
	}
	go c.seedWhenSynced(stop)
	go c.handOnLoop(stop)
	go c.watchConfig(stop)
}

// SetInformers shares the controller manager's informers, so the provider
// adds no watch of its own.
func (c *Cloud) SetInformers(f informers.SharedInformerFactory) {
	inf := f.Core().V1().Services()
	c.services = inf.Lister()
	c.synced = inf.Informer().HasSynced
	close(c.informersSet)
}

func (c *Cloud) seedWhenSynced(stop <-chan struct{}) {
	select {
	case <-c.informersSet:
	case <-stop:
		return
	}
	if !cache.WaitForCacheSync(stop, c.synced) {
		return
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "Listing Services from the informer cache failed; seeding from an empty ledger")
	}
	c.Seed(svcs)
}

// Seed records the addresses already in Service statuses (the ledger), oldest
// Service first so the oldest keeps a contested address, then opens IPAM.
func (c *Cloud) Seed(svcs []*v1.Service) {
	c.seedOnce.Do(func() {
		cfg := c.cfg.Load()
		sort.SliceStable(svcs, func(i, j int) bool {
			ti, tj := svcs[i].CreationTimestamp.Time, svcs[j].CreationTimestamp.Time
			if !ti.Equal(tj) {
				return ti.Before(tj)
			}
			return serviceKey(svcs[i]) < serviceKey(svcs[j])
		})
		seeded := 0
		for _, svc := range svcs {
			ips := apicontract.IngressIPs(svc)
			if !wantsLoadBalancer(svc) || len(ips) == 0 {
				continue
			}
			req, err := requestFor(cfg, svc)
			if err != nil {
				// The annotation is bad now, but the address is the user's:
				// keep it under a plain request.
				req = ipam.Request{Key: serviceKey(svc), Created: svc.CreationTimestamp.Time}
			}
			if err := c.alloc.Seed(req, ips); err != nil {
				c.recorder.Eventf(svc, v1.EventTypeWarning, apicontract.ReasonAddressConflict,
					"Address %v from this Service's status could not be kept: %v; a new address will be assigned", ips, err)
				continue
			}
			seeded++
			for _, ip := range ips {
				if _, ok := cfg.PoolFor(ip); !ok {
					c.recorder.Eventf(svc, v1.EventTypeWarning, apicontract.ReasonOrphanedAddress,
						"Address %s is in no configured pool; the Service keeps it until it is deleted or asks for another", ip)
				}
			}
		}
		klog.InfoS("IPAM seeded from Service statuses", "services", seeded)
		close(c.seeded)
	})
}

func (c *Cloud) isSeeded() bool {
	select {
	case <-c.seeded:
		return true
	default:
		return false
	}
}

// LoadBalancer returns the load-balancer implementation.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return (*loadBalancer)(c), true }

// InstancesV2 returns the node-initialisation implementation.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return (*instances)(c), true }

// Instances is superseded by InstancesV2.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// Zones is deprecated once InstancesV2 exists.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not supported.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not supported: pod networking is the CNI's job on bare metal.
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName returns "baremetal".
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID is true: a bare-metal cluster owns its pools outright.
func (c *Cloud) HasClusterID() bool { return true }

// contextFrom adapts a stop channel to a context.
func contextFrom(stop <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	return ctx
}

// seedRetryDelay is how soon a Service is retried while IPAM is seeding.
const seedRetryDelay = time.Second
