// Package lab runs the project's end-to-end environment on one machine: etcd
// and kube-apiserver on loopback, L2 segments made of Linux bridges in their
// own network namespaces, hosts as network namespaces attached to them, FRR
// routers, and the processes under test. Nothing it creates touches the root
// network namespace except loopback listeners, and everything it starts it
// stops.
//
// Two ways in: New(dir) gives an *Env with an explicit Close for programs
// (make demo); the functions taking a testing.TB (StartCluster, NewSegment,
// StartProcess, StartFRR) wrap it and register the teardown with t.Cleanup.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Env owns everything started through it and tears it down on Close, in
// reverse order of creation.
type Env struct {
	// Dir holds logs, configs, certificates and sockets.
	Dir string

	mu      sync.Mutex
	closers []func()
	procs   []*Process
	closed  bool
}

// New returns an Env keeping its files in dir (created if missing).
func New(dir string) (*Env, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the lab directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Env{Dir: abs}, nil
}

// Close stops and removes everything started through the Env. It is safe to
// call more than once.
func (e *Env) Close() {
	e.mu.Lock()
	closers := e.closers
	e.closers = nil
	e.closed = true
	e.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// onClose registers f to run at Close.
func (e *Env) onClose(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, f)
}

func (e *Env) track(p *Process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.procs = append(e.procs, p)
}

// Processes returns every process started through the Env, running or not.
func (e *Env) Processes() []*Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Process(nil), e.procs...)
}

// Requirements says what the lab needs and this machine lacks: root, and the
// tools the Debian packages in hack/install-deps.sh provide.
func Requirements() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	}
	for _, tool := range []string{"ip", "etcd", "curl", "ping", "arping", "ndisc6", "vtysh", "sysctl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range []string{zebraPath, bgpdPath} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	// FRR's daemons insist their user belongs to the vty group; the lab runs
	// them as root with that group (see Host.StartFRR).
	if _, err := user.LookupGroup("frrvty"); err != nil {
		missing = append(missing, "group frrvty (package frr)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the lab needs %s; run hack/install-deps.sh as root", strings.Join(missing, ", "))
	}
	return nil
}

// Eventually calls f every interval until it returns nil, timeout passes or
// ctx ends, and returns f's last error (wrapped with how long it tried).
func Eventually(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still failing after %s: %w", time.Since(start).Round(time.Millisecond), err)
		case <-t.C:
		}
	}
}

// run executes a command and returns its combined output, with the output in
// the error when it fails.
func run(ctx context.Context, args ...string) ([]byte, error) {
	return runStdin(ctx, "", args...)
}

// runStdin is run with stdin as the command's input.
func runStdin(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return out, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
