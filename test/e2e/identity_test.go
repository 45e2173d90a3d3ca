package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/deploy"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The binaries run with the identities of deploy/base, not as admin, so
// that every test also proves the manifests' RBAC is enough for what it
// exercises. The names are those of deploy/base/*-rbac.yaml.
const (
	ccmNamespace   = "kube-system"
	ccmAccount     = "baremetal-cloud-controller-manager"
	agentNamespace = "baremetal-system"
	agentAccount   = "baremetal-node-agent"
)

// rbacApplied records the clusters that have deploy/base's RBAC already.
var rbacApplied sync.Map // *lab.Cluster → *sync.Once

// applyRBAC server-side applies the Namespace, ServiceAccounts and RBAC of
// deploy/base to c, once per cluster. (The lab has no kubelet: the
// Deployment and DaemonSet are replaced by processes.)
func applyRBAC(t testing.TB, c *lab.Cluster) {
	t.Helper()
	once, _ := rbacApplied.LoadOrStore(c, new(sync.Once))
	var err error
	once.(*sync.Once).Do(func() {
		var root string
		if root, err = lab.RepoRoot(); err != nil {
			return
		}
		objs, rerr := deploy.Read(filepath.Join(root, "deploy", "base"))
		if rerr != nil {
			err = rerr
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = deploy.Apply(ctx, c.RestConfig, objs, deploy.ApplyOptions{FieldManager: "baremetal-e2e", Kinds: deploy.IdentityKinds})
	})
	if err != nil {
		rbacApplied.Delete(c)
		t.Fatalf("applying the RBAC of deploy/base: %v", err)
	}
}

// ccmKubeconfig is a kubeconfig for the CCM's ServiceAccount, for processes
// in the root namespace.
func ccmKubeconfig(t testing.TB, c *lab.Cluster) string {
	t.Helper()
	applyRBAC(t, c)
	kc, err := c.ServiceAccountKubeconfig(t.Context(), ccmNamespace, ccmAccount)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// agentKubeconfig is a kubeconfig for the agents' ServiceAccount, for an
// agent inside h's namespace.
func agentKubeconfig(t testing.TB, c *lab.Cluster, h *lab.Host) string {
	t.Helper()
	applyRBAC(t, c)
	kc, err := c.ServiceAccountKubeconfigIn(t.Context(), h, agentNamespace, agentAccount)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// checkNotForbidden fails t, when it ends, for every line of p's log that
// says the API server refused a request: the manifests' RBAC is missing a
// rule that the program needs. Lines logged while c's API server was
// restarting are excused (see restartAPIServer). Call it right after
// starting p.
func checkNotForbidden(t testing.TB, c *lab.Cluster, name string, p *lab.Process) {
	t.Helper()
	t.Cleanup(func() {
		var refused []string
		for _, line := range strings.Split(p.Logs(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") && !duringRestart(c, line) {
				refused = append(refused, line)
			}
		}
		if len(refused) > 0 {
			t.Errorf("%s was refused by RBAC %d times (deploy/base/*-rbac.yaml lacks a rule); the first:\n%s",
				name, len(refused), strings.Join(refused[:min(3, len(refused))], "\n"))
		}
	})
}

// restartGrace is how long after a restarted API server reports ready that
// a refusal is still blamed on the restart.
const restartGrace = 5 * time.Second

var (
	restartsMu sync.Mutex
	restarts   = map[*lab.Cluster][][2]time.Time{}
)

// restartAPIServer starts c's stopped API server again. A kube-apiserver
// answers requests before its RBAC informers have synced and refuses them
// as forbidden meanwhile, so the binaries' refusals from then until
// restartGrace after it is ready are not held against the manifests.
func restartAPIServer(ctx context.Context, t testing.TB, c *lab.Cluster) {
	t.Helper()
	from := time.Now()
	err := c.StartAPIServer(ctx)
	restartsMu.Lock()
	restarts[c] = append(restarts[c], [2]time.Time{from, time.Now().Add(restartGrace)})
	restartsMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// klogTime matches the time in a klog header such as "E1122 02:52:38.928681".
var klogTime = regexp.MustCompile(`^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6}) `)

// duringRestart says whether the klog line was logged while c's API server
// was restarting.
func duringRestart(c *lab.Cluster, line string) bool {
	m := klogTime.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	at, err := time.ParseInLocation("0102 15:04:05.000000", m[1], time.Local)
	if err != nil {
		return false
	}
	restartsMu.Lock()
	defer restartsMu.Unlock()
	for _, w := range restarts[c] {
		at := at.AddDate(w[0].Year()-at.Year(), 0, 0) // klog omits the year
		if !at.Before(w[0]) && !at.After(w[1]) {
			return true
		}
	}
	return false
}

func TestDuringRestart(t *testing.T) {
	c := &lab.Cluster{}
	from := time.Date(2026, 11, 22, 2, 52, 30, 0, time.Local)
	restartsMu.Lock()
	restarts[c] = [][2]time.Time{{from, from.Add(10 * time.Second)}}
	restartsMu.Unlock()
	t.Cleanup(func() {
		restartsMu.Lock()
		delete(restarts, c)
		restartsMu.Unlock()
	})
	for _, tc := range []struct {
		line string
		want bool
	}{
		{`E1122 02:52:38.928681   16900 agent.go:369] "Renewing the agent lease failed" err="... is forbidden"`, true},
		{`E1122 02:52:30.000000   16900 reflector.go:227] "Failed to watch" err="... is forbidden"`, true},
		{`E1122 02:52:40.000001   16900 reflector.go:227] "Failed to watch" err="... is forbidden"`, false},
		{`E1122 02:52:29.999999   16900 reflector.go:227] "Failed to watch" err="... is forbidden"`, false},
		{`E1123 02:52:38.928681   16900 agent.go:369] a day later`, false},
		{`services is forbidden: no klog header`, false},
	} {
		if got := duringRestart(c, tc.line); got != tc.want {
			t.Errorf("duringRestart(%q) = %t, want %t", tc.line, got, tc.want)
		}
	}
}
