package provider

import (
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// A Service whose pool is full, or whose requested address is held, waits
// for a release. Waiting must be both prompt and quiet: the framework turns
// every failed sync into two events, and a thousand Services may wait on one
// pool. So a waiting Service is retried only every waitRetryDelay (two
// events a minute), and a release hands the freed address on at once: the
// provider allocates it to the oldest waiter that can take it and requeues
// that one Service on the framework's service controller, which then syncs
// it as usual (Ensure returns the allocation; the framework writes status).

// waitRetryDelay is the safety-net retry of a waiting Service when releases
// are handed on (SetRequeue); fallbackRetryDelay when they are not.
const (
	waitRetryDelay     = time.Minute
	fallbackRetryDelay = 5 * time.Second
)

// waitList is the set of Services waiting for an address, oldest first.
type waitList struct {
	mu      sync.Mutex
	created map[string]time.Time // key → Service creation time
}

func (w *waitList) add(key string, created time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.created == nil {
		w.created = map[string]time.Time{}
	}
	w.created[key] = created
}

func (w *waitList) remove(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.created, key)
}

func (w *waitList) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.created)
}

// ordered returns the waiting keys, oldest Service first (then by key), the
// order in which freed addresses are handed on.
func (w *waitList) ordered() []string {
	w.mu.Lock()
	keys := make([]string, 0, len(w.created))
	for k := range w.created {
		keys = append(keys, k)
	}
	created := make(map[string]time.Time, len(keys))
	for _, k := range keys {
		created[k] = w.created[k]
	}
	w.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		ti, tj := created[keys[i]], created[keys[j]]
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return keys[i] < keys[j]
	})
	return keys
}

// SetRequeue installs how a Service is put back on the service controller's
// queue (RequeuingServiceInformer.Requeue). Without it a waiting Service is
// retried every 5 s instead of being handed a freed address at once.
func (c *Cloud) SetRequeue(requeue func(*v1.Service)) { c.requeue.Store(&requeue) }

// retryDelay is how long the framework waits before retrying a waiting Service.
func (c *Cloud) retryDelay() time.Duration {
	if c.requeue.Load() == nil {
		return fallbackRetryDelay
	}
	return waitRetryDelay
}

// addressesFreed asks the hand-on loop to look at the waiting Services.
// Never blocks: one pending request covers any number of releases.
func (c *Cloud) addressesFreed() {
	select {
	case c.freed <- struct{}{}:
	default:
	}
}

// handOnLoop runs while this replica leads.
func (c *Cloud) handOnLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-c.freed:
			c.handOn()
		}
	}
}

// handOn gives free addresses to waiting Services, oldest first, and
// requeues each Service that got one. A waiter that can still not be served
// costs one in-memory allocation attempt, no API call.
func (c *Cloud) handOn() {
	rq := c.requeue.Load()
	if rq == nil || c.services == nil || !c.isSeeded() {
		return
	}
	cfg := c.cfg.Load()
	for _, key := range c.waiting.ordered() {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		svc, err := c.services.Services(ns).Get(name)
		if err != nil || !wantsLoadBalancer(svc) || svc.DeletionTimestamp != nil {
			c.waiting.remove(key) // gone or no longer wanting an address
			continue
		}
		req, err := requestFor(cfg, svc)
		if err != nil {
			c.waiting.remove(key) // its next sync reports the mistake
			continue
		}
		a, err := c.alloc.Allocate(req)
		if err != nil {
			continue
		}
		c.waiting.remove(key)
		klog.V(2).InfoS("Freed address handed on to a waiting Service", "service", klog.KObj(svc), "ips", a.IPs)
		(*rq)(svc)
	}
}
