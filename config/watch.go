package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Metrics both binaries export about following the file, named once here.
const (
	MetricReloadFailures = "baremetal_config_reload_failures_total"
	MetricReloadSuccess  = "baremetal_config_last_reload_success"
)

// Watch follows a cloud-config file for both binaries. It polls the file's
// content rather than watching inodes: a ConfigMap volume is updated by an
// atomic symlink swap, which a content comparison catches however the file
// was replaced, and polling needs no inotify limits on the node.
type Watch struct {
	path string
	last []byte // the content in force: the last file that changed, loaded or not
}

// NewWatch follows path from its content now, taken as the config in force
// (the caller has just loaded it). An unreadable file makes the first good
// read count as a change.
func NewWatch(path string) *Watch {
	data, _ := os.ReadFile(path)
	return &Watch{path: path, last: data}
}

// LoadAndWatch loads the file at path and follows it from exactly the
// content it loaded, so a change made right after the load is not missed.
func LoadAndWatch(path string) (*Config, *Watch, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading cloud-config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("cloud-config %s: %w", path, err)
	}
	return c, &Watch{path: path, last: data}, nil
}

// Path is the file followed.
func (w *Watch) Path() string { return w.path }

// Check reads the file once. changed says whether its content differs from
// the last check's; then either cfg is the new config or err says why it
// was refused (the caller keeps the config in force). A refused file is
// reported once, not at every check. An error with changed false means the
// file could not be read.
func (w *Watch) Check() (cfg *Config, changed bool, err error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, false, fmt.Errorf("reading cloud-config: %w", err)
	}
	if bytes.Equal(data, w.last) {
		return nil, false, nil
	}
	w.last = data
	cfg, err = Parse(data)
	return cfg, true, err
}

// Run checks the file at once (a CCM replica that waited long as a standby
// leads with the current file) and then every interval until ctx is done.
// Each change is handed to apply: a loaded config with a nil error, or a nil
// config with the reason it was refused. A file that cannot be read is
// logged when it becomes unreadable and otherwise ignored. clk nil is the
// real clock.
func (w *Watch) Run(ctx context.Context, every time.Duration, clk clock.WithTicker, apply func(*Config, error)) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	log := klog.FromContext(ctx)
	t := clk.NewTicker(every)
	defer t.Stop()
	unreadable := false
	for {
		cfg, changed, err := w.Check()
		switch {
		case !changed && err != nil:
			if !unreadable {
				log.Error(err, "Cannot read the cloud-config; keeping the one in force", "path", w.path)
			}
			unreadable = true
		case changed:
			unreadable = false
			apply(cfg, err)
		default:
			unreadable = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}
