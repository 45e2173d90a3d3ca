// Command demo is `make demo`: on one machine, as root, it starts the
// project's lab (etcd and kube-apiserver on loopback, three node network
// namespaces, a client, an FRR router with a remote client behind it), runs
// the real cloud-controller-manager and one node agent per node with the
// identities of the deploy/ manifests, creates a layer-2 and a BGP Service,
// shows who announces them and that clients reach them, fails over the
// layer-2 owner, and removes everything again.
//
//	go run ./hack/demo           # the demo; about a minute after the build
//	go run ./hack/demo --keep    # leave the lab up until Ctrl-C
//	go run ./hack/demo --down    # clean up after an interrupted run
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type options struct {
	dir  string
	down bool
	keep bool
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", "/tmp/baremetal-demo", "Directory for the binaries, logs, configs and the state of a running demo.")
	flag.BoolVar(&o.down, "down", false, "Remove what an interrupted demo left behind (processes, network namespaces, files) and exit.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the lab running after the demo until Ctrl-C, to explore it.")
	flag.Parse()

	// Ctrl-C or SIGTERM cancels ctx; whatever the demo started is then
	// removed before it exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Output piped into a program that exits early (`make demo | head`)
	// must not kill the demo before it removed its lab: with SIGPIPE
	// ignored the writes fail instead, and the demo finishes unseen.
	signal.Ignore(syscall.SIGPIPE)

	var err error
	if o.down {
		err = down(ctx, o.dir)
	} else {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		stop()
		os.Exit(1)
	}
}
