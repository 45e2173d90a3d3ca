package lab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// A lab outside `go test`, as make demo uses it: everything hangs off one Env
// and goes away with Close.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "demo-")
	if err != nil {
		log.Fatal(err)
	}
	env, err := lab.New(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	cluster, err := env.StartCluster(ctx)
	if err != nil {
		log.Fatal(err)
	}
	lan, err := env.NewSegment("lan")
	if err != nil {
		log.Fatal(err)
	}
	node, err := lan.NewHost("node-1", netip.MustParsePrefix("192.0.2.11/24"))
	if err != nil {
		log.Fatal(err)
	}
	if err := cluster.CreateNode(ctx, "node-1", []netip.Addr{netip.MustParseAddr("192.0.2.11")}, nil, true); err != nil {
		log.Fatal(err)
	}
	// Least privilege for the agent: a ServiceAccount token, reachable from
	// inside the node's namespace.
	kubeconfig, err := cluster.ServiceAccountKubeconfigIn(ctx, node, "kube-system", "baremetal-node-agent")
	if err != nil {
		log.Fatal(err)
	}
	agent, err := node.Start("agent", "baremetal-node-agent", "--kubeconfig="+kubeconfig, "--node-name=node-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(agent.LogPath)
}
