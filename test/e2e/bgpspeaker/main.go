// Command bgpspeaker runs one announce/bgp Speaker from flags, so the lab
// can run a speaker inside a node's network namespace before (and besides)
// the node agent. It takes its peers from a cloud-config file, filtered by
// the node's labels as the agent does, and its advertisements from a JSON
// file. SIGHUP re-reads both; SIGTERM stops the speaker (withdrawing every
// path, or with --detach keeping those of graceful-restart peers) and exits. The peers' state is written to --status as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Ad is one line of the advertisements file.
type Ad struct {
	Prefix      string   `json:"prefix"`
	Peers       []string `json:"peers"`
	Communities []string `json:"communities,omitempty"`
	LocalPref   *uint32  `json:"localPref,omitempty"`
}

func main() {
	var (
		cloudConfig = flag.String("cloud-config", "", "cloud-config file with bgp.asn and bgp.peers")
		nodeName    = flag.String("node-name", "", "node name")
		nodeLabels  = flag.String("node-labels", "", "node labels k=v,k=v for peers' nodeSelector")
		routerID    = flag.String("router-id", "", "router ID (default: bgp.routerID, else --next-hop4)")
		nextHop4    = flag.String("next-hop4", "", "IPv4 next hop")
		nextHop6    = flag.String("next-hop6", "", "IPv6 next hop")
		adsFile     = flag.String("ads", "", "JSON file: [{prefix, peers, communities, localPref}]")
		statusFile  = flag.String("status", "", "file to write the peers' state to, as JSON")
		detach      = flag.Bool("detach", false, "on SIGTERM, Detach (keep paths with graceful-restart peers) instead of Stop")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(*cloudConfig, *nodeName, *nodeLabels, *routerID, *nextHop4, *nextHop6, *adsFile, *statusFile, *detach); err != nil {
		fmt.Fprintf(os.Stderr, "bgpspeaker: %v\n", err)
		os.Exit(1)
	}
}

func run(cloudConfig, nodeName, nodeLabels, routerID, nextHop4, nextHop6, adsFile, statusFile string, detach bool) error {
	ctx := context.Background()
	log := klog.Background().WithValues("node", nodeName)
	cfg, err := config.Load(cloudConfig)
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(nodeLabels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	opts := bgp.Options{NodeName: nodeName, ASN: cfg.BGP.ASN, Logger: log}
	if opts.NextHop4, err = parseOptional(nextHop4); err != nil {
		return err
	}
	if opts.NextHop6, err = parseOptional(nextHop6); err != nil {
		return err
	}
	switch {
	case routerID != "":
		opts.RouterID, err = netip.ParseAddr(routerID)
	case cfg.BGP.RouterID != "":
		opts.RouterID, err = netip.ParseAddr(cfg.BGP.RouterID)
	default:
		opts.RouterID = opts.NextHop4
	}
	if err != nil {
		return err
	}
	s, err := bgp.New(ctx, opts)
	if err != nil {
		return err
	}

	apply := func() {
		cfg, err := config.Load(cloudConfig)
		if err != nil {
			log.Error(err, "Reading the cloud-config")
			return
		}
		var peers []config.Peer
		for _, p := range cfg.BGP.Peers {
			if p.AdmitsNode(labels) {
				peers = append(peers, p)
			}
		}
		if err := s.SetPeers(ctx, peers); err != nil {
			log.Error(err, "Setting peers")
		}
		ads, err := readAds(adsFile)
		if err != nil {
			log.Error(err, "Reading advertisements")
			return
		}
		start := time.Now()
		if err := s.SetAdvertisements(ctx, ads); err != nil {
			log.Error(err, "Setting advertisements")
		}
		log.Info("Applied", "peers", len(peers), "advertisements", len(ads), "took", time.Since(start))
	}
	apply()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				apply()
				continue
			}
			start := time.Now()
			stop := s.Stop
			if detach {
				stop = s.Detach
			}
			err := stop(ctx)
			log.Info("Stopped", "detach", detach, "took", time.Since(start), "err", err)
			return err
		case <-tick.C:
			if statusFile != "" {
				if err := writeStatus(statusFile, s.Peers()); err != nil {
					log.Error(err, "Writing status")
				}
			}
		}
	}
}

func parseOptional(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s)
}

func readAds(path string) ([]bgp.Advertisement, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var in []Ad
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]bgp.Advertisement, 0, len(in))
	for _, a := range in {
		p, err := netip.ParsePrefix(a.Prefix)
		if err != nil {
			return nil, err
		}
		ad := bgp.Advertisement{Prefix: p, Peers: a.Peers, LocalPref: a.LocalPref}
		for _, c := range a.Communities {
			comm, err := config.ParseCommunity(c)
			if err != nil {
				return nil, err
			}
			ad.Communities = append(ad.Communities, comm)
		}
		out = append(out, ad)
	}
	return out, nil
}

func writeStatus(path string, peers []bgp.PeerStatus) error {
	b, err := json.Marshal(peers)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
