package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The state file records the running demo and every process it started, so
// that `--down` can clean up after a run that was killed before it could.
// (Lab processes die with the demo through their parent-death signal; the
// file covers what that cannot: a demo that is stuck or still alive, and
// the network namespaces, which outlive processes.)
const stateFile = "state.json"

type state struct {
	PID       int         `json:"pid"`
	Args      []string    `json:"args"`
	Started   time.Time   `json:"started"`
	Processes []stateProc `json:"processes"`
}

type stateProc struct {
	Name string   `json:"name"`
	PID  int      `json:"pid"`
	Args []string `json:"args"`
}

// claimState makes dir the home of this run: it refuses when another demo
// is running there and cleans up after one that died.
func claimState(ctx context.Context, dir string, out *printer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the demo directory: %w", err)
	}
	old, err := readState(dir)
	if err != nil {
		return err
	}
	if old != nil && old.PID != os.Getpid() && running(old.PID, old.Args) {
		return fmt.Errorf("another demo is running (pid %d); stop it with Ctrl-C in its terminal or with `make demo-down`", old.PID)
	}
	if old != nil {
		out.Say("Cleaning up after an earlier demo that did not finish (pid %d).", old.PID)
		if err := cleanLeftovers(ctx, dir, old, out); err != nil {
			return err
		}
	}
	return writeState(dir, &state{PID: os.Getpid(), Args: os.Args, Started: time.Now()})
}

// recordProcesses rewrites the state file with the lab's processes.
func recordProcesses(dir string, env *lab.Env) error {
	st := &state{PID: os.Getpid(), Args: os.Args, Started: time.Now()}
	if old, err := readState(dir); err == nil && old != nil && old.PID == st.PID {
		st.Started = old.Started
	}
	for _, p := range env.Processes() {
		if p.Cmd.Process == nil || p.Exited() {
			continue
		}
		st.Processes = append(st.Processes, stateProc{Name: p.Name, PID: p.Cmd.Process.Pid, Args: p.Cmd.Args})
	}
	return writeState(dir, st)
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the demo state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("the demo state file %s is damaged (%w); remove it and run `make demo-down` again", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

func writeState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing the demo state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func removeState(dir string) error {
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the demo state: %w", err)
	}
	return nil
}

// down is `--down`: stop a demo that is still running (it removes its own
// lab), then remove whatever a dead one left.
func down(ctx context.Context, dir string) error {
	out := newPrinter(os.Stdout)
	out.Raw(fmt.Sprintf("Removing what the demo left in %s, if anything:\n", dir))
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st != nil && st.PID != os.Getpid() && running(st.PID, st.Args) {
		out.Say("A demo is still running (pid %d): asking it to stop and clean up.", st.PID)
		if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stopping the running demo (pid %d): %w", st.PID, err)
		}
		if !waitGone(ctx, st.PID, 60*time.Second) {
			out.Say("It did not stop within a minute: killing it.")
			if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("killing the running demo (pid %d): %w", st.PID, err)
			}
			waitGone(ctx, st.PID, 10*time.Second)
		}
		// It may have cleaned up and removed the state: read it again.
		if st, err = readState(dir); err != nil {
			return err
		}
	}
	if st == nil {
		st = &state{}
	}
	if err := cleanLeftovers(ctx, dir, st, out); err != nil {
		return err
	}
	out.Say("Nothing of the demo is left running.")
	return nil
}

// cleanLeftovers kills the recorded processes that are still alive, deletes
// the network namespaces of dead lab processes and removes the lab's files.
func cleanLeftovers(ctx context.Context, dir string, st *state, out *printer) error {
	var killed []string
	for _, p := range st.Processes {
		if !running(p.PID, p.Args) {
			continue
		}
		pgid, err := syscall.Getpgid(p.PID)
		target := p.PID
		if err == nil && pgid == p.PID {
			target = -pgid // lab processes lead their own group: take children too
		}
		if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing leftover %s (pid %d): %w", p.Name, p.PID, err)
		}
		waitGone(ctx, p.PID, 5*time.Second)
		killed = append(killed, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
	}
	if len(killed) > 0 {
		out.Say("Killed leftover processes: %s.", strings.Join(killed, ", "))
	}
	before := labNamespaces()
	if err := lab.SweepStaleNamespaces(ctx); err != nil {
		return fmt.Errorf("deleting leftover network namespaces: %w", err)
	}
	// The sweep spares namespaces of a pid that still exists, and a killed
	// demo can linger as a zombie: delete the recorded demo's own by name.
	if st.PID > 0 && !running(st.PID, st.Args) {
		prefix := fmt.Sprintf("bm%dx", st.PID)
		for _, ns := range labNamespaces() {
			if !strings.HasPrefix(ns, prefix) {
				continue
			}
			if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				return fmt.Errorf("deleting leftover network namespace %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
			}
		}
	}
	if n := len(before) - len(labNamespaces()); n > 0 {
		out.Say("Deleted %d leftover lab network namespaces.", n)
	}
	if err := os.RemoveAll(filepath.Join(dir, labDirName)); err != nil {
		return fmt.Errorf("removing the lab's files: %w", err)
	}
	return removeState(dir)
}

// labNamespaces lists the network namespaces the lab package creates (by
// any process).
func labNamespaces() []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "bm") && strings.Contains(e.Name(), "x") {
			names = append(names, e.Name())
		}
	}
	return names
}

// running reports whether pid is alive and still the program recorded with
// args, so a recycled pid is never killed. A program started through
// `ip netns exec NS prog ...` shows as `prog ...` once ip has exec'd it.
func running(pid int, args []string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return false
	}
	actual := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(actual) > len(args) {
		return false
	}
	return slices.Equal(actual, args[len(args)-len(actual):])
}

// waitGone waits until pid no longer exists (or is a zombie).
func waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	err := lab.Eventually(ctx, timeout, 50*time.Millisecond, func() error {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return nil // gone
		}
		// Field 3, after the parenthesised command name, is the state.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return nil
		}
		return fmt.Errorf("pid %d still running", pid)
	})
	return err == nil
}
