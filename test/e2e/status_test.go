package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// statusReport is the part of `baremetal-config status -o json` this test reads.
type statusReport struct {
	Services []struct {
		Namespace, Name string
		Addresses       []struct {
			IP          string   `json:"ip"`
			Pool        string   `json:"pool"`
			Mode        string   `json:"mode"`
			AnnouncedBy []string `json:"announcedBy"`
		} `json:"addresses"`
	} `json:"services"`
}

// TestStatusMatchesARP: the owner `baremetal-config status` names is the
// node that answers ARP for the address, before and after the owner hands
// over on SIGTERM.
func TestStatusMatchesARP(t *testing.T) {
	l := newL2Lab(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ip := l.createService(ctx, "status")
	statusOwner := func() (string, error) {
		cmd := exec.CommandContext(ctx, bins.Path("baremetal-config"), "status", "-o", "json",
			"--kubeconfig", l.c.AdminKubeconfig, "--cloud-config", l.cfgPath, "--agent-namespace", agentNamespace, "-n", "default")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("status: %w: %s", err, errOut.String())
		}
		var r statusReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return "", err
		}
		for _, s := range r.Services {
			for _, a := range s.Addresses {
				if a.IP == ip.String() {
					if a.Pool != "lan" || a.Mode != "layer2" || len(a.AnnouncedBy) != 1 {
						return "", fmt.Errorf("status for %s: pool %q mode %q announced by %v", ip, a.Pool, a.Mode, a.AnnouncedBy)
					}
					return a.AnnouncedBy[0], nil
				}
			}
		}
		return "", fmt.Errorf("status does not list %s:\n%s", ip, out.String())
	}
	// waitStatus waits until status names want (the agents' view and the
	// API catch up with ARP within the Lease renewal).
	waitStatus := func(want string) {
		t.Helper()
		err := lab.Eventually(ctx, 20*time.Second, 200*time.Millisecond, func() error {
			got, err := statusOwner()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("status names %s, ARP is answered by %s", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	owner := l.waitOwner(ctx, ip, 10*time.Second)
	waitStatus(owner)

	old := l.node(owner)
	if err := old.agent.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := old.agent.Wait(10 * time.Second); err != nil {
		t.Errorf("agent after SIGTERM: %v", err)
	}
	var others []string
	for _, nd := range l.nodes {
		if nd.name != owner {
			others = append(others, nd.name)
		}
	}
	next := l.waitOwner(ctx, ip, 10*time.Second, others...)
	if !slices.Contains(others, next) {
		t.Fatalf("after SIGTERM of %s, ARP is answered by %s", owner, next)
	}
	waitStatus(next)
}
