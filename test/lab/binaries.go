package lab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// KubeAPIServerVersion is the kube-apiserver the lab runs, built from
// hack/kube-apiserver.
const KubeAPIServerVersion = "v1.36.3"

const modulePath = "github.com/cloud-provider-baremetal/cloud-provider-baremetal"

// RepoRoot returns the root of this repository's checkout.
func RepoRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); isOurModule(gomod) {
			return filepath.Dir(gomod), nil
		}
	}
	// Outside the module (e.g. a binary run from elsewhere): this file's
	// compile-time location.
	_, file, _, ok := runtime.Caller(0)
	if ok {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if isOurModule(filepath.Join(root, "go.mod")) {
			return filepath.Abs(root)
		}
	}
	return "", fmt.Errorf("cannot find the %s checkout: run from inside it", modulePath)
}

func isOurModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == modulePath
		}
	}
	return false
}

// KubeAPIServer returns the path of the cached kube-apiserver binary
// ($LAB_KUBE_APISERVER, else $HOME/.cache/baremetal-lab/kube-apiserver-VERSION),
// building it from hack/kube-apiserver first if it is missing. Concurrent
// callers (and hack/build-kube-apiserver.sh) build it once: they serialise on
// a flock next to the binary. A build takes minutes.
func KubeAPIServer(ctx context.Context) (string, error) {
	if p := os.Getenv("LAB_KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("LAB_KUBE_APISERVER: %w", err)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	cache := filepath.Join(home, ".cache", "baremetal-lab")
	bin := filepath.Join(cache, "kube-apiserver-"+KubeAPIServerVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, "kube-apiserver.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking the kube-apiserver cache: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built while we waited
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	defer os.Remove(tmp)
	start := time.Now()
	fmt.Fprintf(os.Stderr, "lab: building kube-apiserver %s into %s (takes minutes, once)\n", KubeAPIServerVersion, bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "k8s.io/kubernetes/cmd/kube-apiserver")
	cmd.Dir = filepath.Join(root, "hack", "kube-apiserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building kube-apiserver in %s: %w\n%s", cmd.Dir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "lab: built kube-apiserver in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}

// Binaries is a directory of freshly built programs.
type Binaries struct {
	Dir string
}

// Path returns the path of a built program, e.g. Path("lab-echo").
func (b *Binaries) Path(name string) string {
	return filepath.Join(b.Dir, name)
}

// BuildBinaries builds every program under ./cmd/... and the lab's own
// programs (./test/lab/cmd/...) into dir in one go build.
func BuildBinaries(ctx context.Context, dir string) (*Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	list := exec.CommandContext(ctx, "go", "list", "-f", "{{if eq .Name \"main\"}}{{.ImportPath}}{{end}}", "./cmd/...", "./test/lab/cmd/...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the programs to build: %w", err)
	}
	pkgs := strings.Fields(string(out))
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return &Binaries{Dir: dir}, nil
}
