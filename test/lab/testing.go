package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"k8s.io/client-go/kubernetes"
)

var unsafePath = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// NewTestEnv returns an Env closed at the end of the test. Its files live in
// t.TempDir(), or under $LAB_LOG_DIR (kept) when that is set. If the test
// failed, the tail of every process log is printed first.
func NewTestEnv(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("LAB_LOG_DIR"); keep != "" {
		// The pid keeps runs apart: a second run must not find the first
		// one's etcd data.
		dir = filepath.Join(keep, fmt.Sprintf("%s-%d-%d", unsafePath.ReplaceAllString(t.Name(), "_"), os.Getpid(), nameSeq.Add(1)))
	}
	e, err := New(dir)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range e.Processes() {
				t.Logf("lab: last lines of %s (%s):\n%s", p.Name, p.LogPath, p.tail(40))
			}
		}
		e.Close()
	})
	return e
}

// StartCluster starts etcd and kube-apiserver for the test (see
// Env.StartCluster) and stops them at its end.
func StartCluster(ctx context.Context, t testing.TB) *Cluster {
	t.Helper()
	c, err := NewTestEnv(t).StartCluster(ctx)
	if err != nil {
		t.Fatalf("lab: starting the cluster: %v", err)
	}
	return c
}

// NewSegment creates an L2 segment for the test; it and its hosts are removed
// at the end. AddHost on it fails the test on error.
func NewSegment(t testing.TB, name string) *Segment {
	t.Helper()
	s, err := NewTestEnv(t).NewSegment(name)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	s.fatal = t.Fatalf
	return s
}

// StartProcess runs args (args[0] is the program) in the root namespace with
// its output in dir/name.log (dir "" = a test temp dir), stopped at the end
// of the test.
func StartProcess(t testing.TB, dir, name string, args ...string) *Process {
	t.Helper()
	e := NewTestEnv(t)
	p, err := e.StartProcess(dir, name, args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return p
}

// StartFRR starts FRR in h's namespace (see Host.StartFRR), stopped at the end
// of the test.
func StartFRR(t testing.TB, h *Host, frrConf string) *Router {
	t.Helper()
	r, err := h.StartFRR(frrConf)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartServiceProxy starts a ServiceProxy (see Env.StartServiceProxy) for
// hosts, stopped at the end of the test.
func StartServiceProxy(t testing.TB, client kubernetes.Interface, hosts ...*Host) *ServiceProxy {
	t.Helper()
	p, err := NewTestEnv(t).StartServiceProxy(client, hosts...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return p
}
