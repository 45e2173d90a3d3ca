package provider

import (
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// RequeuingServiceInformer is the Service informer handed to the framework's
// service controller. It passes everything through and remembers the event
// handler the controller registers, so that Requeue can put one Service back
// on the controller's own queue exactly as a Service update would: no write
// to the API, no timer, the framework's usual sync (Ensure, status patch).
type RequeuingServiceInformer struct {
	coreinformers.ServiceInformer

	mu       sync.Mutex
	handlers []cache.ResourceEventHandler
}

// NewRequeuingServiceInformer wraps inf; pass the result to
// servicecontroller.New and its Requeue to Cloud.SetRequeue.
func NewRequeuingServiceInformer(inf coreinformers.ServiceInformer) *RequeuingServiceInformer {
	return &RequeuingServiceInformer{ServiceInformer: inf}
}

// Informer returns the shared informer, with handler registration recorded.
func (r *RequeuingServiceInformer) Informer() cache.SharedIndexInformer {
	return &recordingInformer{SharedIndexInformer: r.ServiceInformer.Informer(), r: r}
}

// Requeue makes the service controller sync svc soon. The controller's add
// handler enqueues any Service that wants a load balancer; its queue
// de-duplicates, so a Service already queued is not synced twice.
func (r *RequeuingServiceInformer) Requeue(svc *v1.Service) {
	r.mu.Lock()
	hs := append([]cache.ResourceEventHandler(nil), r.handlers...)
	r.mu.Unlock()
	for _, h := range hs {
		h.OnAdd(svc, false)
	}
}

type recordingInformer struct {
	cache.SharedIndexInformer
	r *RequeuingServiceInformer
}

func (i *recordingInformer) record(h cache.ResourceEventHandler) {
	i.r.mu.Lock()
	defer i.r.mu.Unlock()
	i.r.handlers = append(i.r.handlers, h)
}

func (i *recordingInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	i.record(h)
	return i.SharedIndexInformer.AddEventHandler(h)
}

func (i *recordingInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, resync time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	i.record(h)
	return i.SharedIndexInformer.AddEventHandlerWithResyncPeriod(h, resync)
}

func (i *recordingInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, o cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	i.record(h)
	return i.SharedIndexInformer.AddEventHandlerWithOptions(h, o)
}
