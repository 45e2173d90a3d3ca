package main

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	"k8s.io/cloud-provider/names"
	controllermanagerapp "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/provider"
)

// controllerInitializers copies the framework's map before editing it, and
// starts the service controller our way (startServiceController).
func controllerInitializers() map[string]app.ControllerInitFuncConstructor {
	inits := make(map[string]app.ControllerInitFuncConstructor, len(app.DefaultInitFuncConstructors))
	for name, c := range app.DefaultInitFuncConstructors {
		inits[name] = c
	}
	svc := inits[names.ServiceLBController]
	svc.Constructor = startServiceController
	inits[names.ServiceLBController] = svc
	return inits
}

// startServiceController is the framework's own start-up of its service
// controller (k8s.io/cloud-provider/app/core.go) with one difference: the
// controller gets the Service informer through provider.RequeuingServiceInformer,
// so the provider can put a Service back on the controller's queue the moment
// an address it waits for is released, and it writes its events through a
// client of their own (eventsApart).
func startServiceController(initContext app.ControllerInitContext, completed *cloudcontrollerconfig.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
	return func(ctx context.Context, cc controllermanagerapp.ControllerContext) (controller.Interface, bool, error) {
		services := provider.NewRequeuingServiceInformer(completed.SharedInformers.Core().V1().Services())
		if err := services.Informer().SetTransform(dropManagedFields); err != nil {
			return nil, false, fmt.Errorf("trimming the Service informer: %w", err)
		}
		client := completed.ClientBuilder.ClientOrDie(initContext.ClientName)
		// The same identity and --kube-api-qps/--kube-api-burst, but a rate
		// limiter of its own: events never hold back an address.
		events, err := kubernetes.NewForConfig(completed.ClientBuilder.ConfigOrDie(initContext.ClientName))
		if err != nil {
			return nil, false, fmt.Errorf("building the service controller's events client: %w", err)
		}
		sc, err := servicecontroller.New(
			cloud,
			withEventsFrom(client, events),
			services,
			completed.SharedInformers.Core().V1().Nodes(),
			completed.ComponentConfig.KubeCloudShared.ClusterName,
			utilfeature.DefaultFeatureGate,
		)
		if err != nil {
			return nil, false, fmt.Errorf("starting the service controller: %w", err)
		}
		if bm, ok := cloud.(*provider.Cloud); ok {
			bm.SetRequeue(services.Requeue)
		}
		go sc.Run(ctx, int(completed.ComponentConfig.ServiceController.ConcurrentServiceSyncs), cc.ControllerManagerMetrics)
		return nil, true, nil
	}
}

// dropManagedFields trims what the Service informer keeps: nothing here reads
// managedFields, which are a third of a Service, held twice (the informer
// and the service controller's copy) and marshalled into every status patch
// the framework computes. With 10,000 Services that is the difference
// between a CCM within 150 MiB and one above it (docs/benchmarks.md).
func dropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
