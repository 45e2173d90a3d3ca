package config

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

const (
	poolA = "pools: [{name: a, addresses: [192.0.2.1/32]}]\n"
	poolB = "pools: [{name: b, addresses: [198.51.100.0/30]}]\n"
	bad   = "pools: [{name: a, addresses: [192.0.2.1/32], bogus: 1}]\n"
)

// replace swaps the file atomically, as the kubelet does for a ConfigMap
// volume.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud-config.yaml")
	replace(t, path, poolA)
	cfg, w, err := LoadAndWatch(path)
	if err != nil || cfg.Pools[0].Name != "a" {
		t.Fatalf("LoadAndWatch: %v %v", cfg, err)
	}

	step := func(name string, wantChanged bool, wantPool, wantErr string) {
		t.Helper()
		cfg, changed, err := w.Check()
		if changed != wantChanged {
			t.Errorf("%s: changed %v, want %v", name, changed, wantChanged)
		}
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
			}
			if cfg != nil {
				t.Errorf("%s: a config came with the error", name)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case wantPool == "":
			if cfg != nil {
				t.Errorf("%s: config %v, want none", name, cfg.Pools)
			}
		case cfg == nil || cfg.Pools[0].Name != wantPool:
			t.Errorf("%s: config %v, want pool %s", name, cfg, wantPool)
		}
	}
	step("unchanged after load", false, "", "")
	step("still unchanged", false, "", "")
	replace(t, path, poolB)
	step("changed", true, "b", "")
	step("unchanged after change", false, "", "")
	replace(t, path, bad)
	step("invalid", true, "", "pools[0].bogus: unknown field (line 1)")
	step("invalid reported once", false, "", "")
	replace(t, path, poolB)
	step("back to the good file", true, "b", "")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, changed, err := w.Check()
	if changed || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed file: changed %v err %v, want unchanged and ErrNotExist", changed, err)
	}
	replace(t, path, poolB)
	step("same content back after a read error", false, "", "")
}

func TestNewWatchStartsFromContentNow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cloud-config.yaml")
	replace(t, path, poolA)
	w := NewWatch(path)
	if w.Path() != path {
		t.Errorf("Path %q", w.Path())
	}
	if cfg, changed, err := w.Check(); changed || cfg != nil || err != nil {
		t.Errorf("unchanged file: %v %v %v", cfg, changed, err)
	}

	// Unreadable at start: the first good read is a change.
	missing := filepath.Join(dir, "later.yaml")
	w = NewWatch(missing)
	if _, changed, err := w.Check(); changed || err == nil {
		t.Errorf("missing file: changed %v err %v", changed, err)
	}
	replace(t, missing, poolA)
	if cfg, changed, err := w.Check(); !changed || err != nil || cfg.Pools[0].Name != "a" {
		t.Errorf("file appeared: %v %v %v", cfg, changed, err)
	}
}

func TestLoadAndWatchRefusesABadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud-config.yaml")
	replace(t, path, bad)
	if _, _, err := LoadAndWatch(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want one naming %s", err, path)
	}
	if _, _, err := LoadAndWatch(path + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

type applied struct {
	cfg *Config
	err error
}

func TestWatchRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud-config.yaml")
	replace(t, path, poolA)
	_, w, err := LoadAndWatch(path)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	got := make(chan applied, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, 2*time.Second, clk, func(c *Config, err error) { got <- applied{c, err} })
	}()
	defer func() { cancel(); <-done }()

	next := func() applied {
		t.Helper()
		select {
		case a := <-got:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no callback")
			return applied{}
		}
	}
	waitTicker := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("Run made no ticker")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitTicker()

	// Ticks over an unchanged file call nothing: the first callback is the
	// change made after them.
	clk.Step(2 * time.Second)
	clk.Step(2 * time.Second)
	replace(t, path, poolB)
	clk.Step(2 * time.Second)
	if a := next(); a.err != nil || a.cfg == nil || a.cfg.Pools[0].Name != "b" {
		t.Fatalf("change: %+v", a)
	}

	replace(t, path, bad)
	clk.Step(2 * time.Second)
	if a := next(); a.cfg != nil || a.err == nil || !strings.Contains(a.err.Error(), "bogus") {
		t.Fatalf("invalid file: %+v", a)
	}

	// The refused file is not reported again; the next callback is the fix.
	clk.Step(2 * time.Second)
	replace(t, path, poolA)
	clk.Step(2 * time.Second)
	if a := next(); a.err != nil || a.cfg == nil || a.cfg.Pools[0].Name != "a" {
		t.Fatalf("fixed file: %+v", a)
	}
	select {
	case a := <-got:
		t.Errorf("unexpected callback %+v", a)
	default:
	}
}
