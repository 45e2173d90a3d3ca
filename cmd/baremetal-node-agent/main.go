// Command baremetal-node-agent runs on every node (a DaemonSet with
// hostNetwork and NET_RAW; NET_ADMIN only to remove, at start, VIPs an
// older agent bound) and makes the LoadBalancer addresses handed out by
// baremetal-cloud-controller-manager reachable, by layer 2 (ARP/NDP) or BGP.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func main() {
	os.Exit(cli.Run(newCommand(run)))
}

func run(o options) error {
	if o.cloudConfig == "" {
		return errors.New("--cloud-config is required")
	}
	cfg, watch, err := config.LoadAndWatch(o.cloudConfig)
	if err != nil {
		return err
	}
	if o.nodeName == "" {
		return errors.New("the node name is unknown: set --node-name or $NODE_NAME")
	}
	restCfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = announce.Component
	restCfg.QPS, restCfg.Burst = 20, 50
	metrics := announce.NewMetrics()
	restCfg.Wrap(metrics.CountRequests)
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("building a Kubernetes client: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := klog.Background().WithName("agent")
	ctx = klog.NewContext(ctx, log)

	agent, err := announce.New(announce.Options{
		Client: client, NodeName: o.nodeName, Namespace: o.namespace, Config: cfg, Metrics: metrics,
		HeartbeatPort: o.heartbeatPort, HeartbeatKeyFile: o.heartbeatKeyFile,
	})
	if err != nil {
		return err
	}
	if err := serve(ctx, o.metricsAddr, "/metrics", metrics.Handler()); err != nil {
		return err
	}
	if err := serve(ctx, o.healthAddr, "/", agent.HealthHandler()); err != nil {
		return err
	}
	if o.reloadInterval > 0 {
		go watch.Run(ctx, o.reloadInterval, nil, func(cfg *config.Config, err error) {
			if err != nil {
				log.Error(err, "The changed cloud-config is invalid; keeping the previous one", "path", o.cloudConfig)
				agent.RejectConfig(o.cloudConfig, err)
				return
			}
			log.Info("Loaded the changed cloud-config", "path", o.cloudConfig)
			agent.SetConfig(cfg)
		})
	}
	for _, w := range cfg.Warnings {
		log.Info("Warning: the cloud-config loads but is probably not what was meant", "path", o.cloudConfig, "finding", w.Error())
	}
	log.Info("Starting", "node", o.nodeName, "namespace", o.namespace, "pools", len(cfg.Pools))
	return agent.Run(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig given and not running in a cluster: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// serve listens on addr ("0" or "" disables) until ctx is done. Listening
// happens before it returns, so a taken port fails the start.
func serve(ctx context.Context, addr, pattern string, h http.Handler) error {
	if addr == "" || addr == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(pattern, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			klog.FromContext(ctx).Error(err, "Stopping the HTTP server failed", "address", addr)
		}
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "HTTP server failed", "address", addr)
		}
	}()
	return nil
}
