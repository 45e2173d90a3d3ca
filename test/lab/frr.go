package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	zebraPath = "/usr/lib/frr/zebra"
	bgpdPath  = "/usr/lib/frr/bgpd"
	bfddPath  = "/usr/lib/frr/bfdd"
)

// Router is FRR (zebra, bgpd and, when the configuration speaks of BFD,
// bfdd) running inside a host's namespace, with its own pid files, zserv
// socket, BFD control socket and vty socket directory under Dir.
type Router struct {
	Host  *Host
	Dir   string
	Zebra *Process
	BGPd  *Process
	BFDd  *Process // nil unless the configuration has "bfd"

	stopOnce sync.Once
}

// StartFRR starts zebra and bgpd in h's namespace with frrConf as their
// integrated configuration and waits until vtysh can talk to both. When
// frrConf mentions bfd (a "bfd" block with profiles, "neighbor X bfd"),
// bfdd runs beside them on the same zserv and vty sockets. The router is
// stopped with the host, or earlier by Stop.
//
// The daemons run as root with group frrvty: FRR insists that its user be in
// the vty group, and root is not by default.
func (h *Host) StartFRR(frrConf string) (*Router, error) {
	dir := filepath.Join(h.env.Dir, "frr-"+h.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(confPath, []byte(frrConf), 0o644); err != nil {
		return nil, err
	}
	r := &Router{Host: h, Dir: dir}
	h.onClose(r.Stop)
	zserv := filepath.Join(dir, "zserv.api")
	daemon := func(name, path string, extra ...string) (*Process, error) {
		return h.Start(name, append([]string{path,
			"-u", "root", "-g", "frrvty",
			"-i", filepath.Join(dir, name+".pid"),
			"-z", zserv,
			"--vty_socket", dir,
			"-f", confPath,
			"-P", "0", // no TCP vty
			"--log", "stdout",
		}, extra...)...)
	}
	start := time.Now()
	var err error
	if r.Zebra, err = daemon("zebra", zebraPath); err != nil {
		return nil, err
	}
	// bgpd retries the zserv connection on its own, but starting it once
	// zebra listens keeps the logs quiet.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.waitSocket(ctx, r.Zebra, zserv); err != nil {
		return nil, err
	}
	if strings.Contains(frrConf, "bfd") {
		// bfdd first, so bgpd finds BFD when it registers its neighbors.
		if r.BFDd, err = daemon("bfdd", bfddPath, "--bfdctl", filepath.Join(dir, "bfdd.sock")); err != nil {
			return nil, err
		}
		if err := r.waitSocket(ctx, r.BFDd, filepath.Join(dir, "bfdd.vty")); err != nil {
			return nil, err
		}
	}
	if r.BGPd, err = daemon("bgpd", bgpdPath); err != nil {
		return nil, err
	}
	if err := r.waitSocket(ctx, r.BGPd, filepath.Join(dir, "bgpd.vty")); err != nil {
		return nil, err
	}
	err = Eventually(ctx, 20*time.Second, 100*time.Millisecond, func() error {
		_, err := r.Vtysh(ctx, "show bgp summary json")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("FRR in host %q does not answer vtysh: %w", h.Name, err)
	}
	if f, err := os.OpenFile(filepath.Join(dir, "lab.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "FRR ready in %s\n", time.Since(start).Round(time.Millisecond))
		f.Close()
	}
	return r, nil
}

func (r *Router) waitSocket(ctx context.Context, p *Process, path string) error {
	err := Eventually(ctx, 20*time.Second, 50*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited; last output:\n%s", p.Name, p.tail(20))
		}
		_, err := os.Stat(path)
		return err
	})
	if err != nil {
		return fmt.Errorf("FRR in host %q did not start: %w", r.Host.Name, err)
	}
	return nil
}

// Vtysh runs one vtysh command (e.g. "show bgp summary json") against the
// router's daemons and returns the output.
func (r *Router) Vtysh(ctx context.Context, cmd string) (string, error) {
	out, err := run(ctx, "vtysh", "--vty_socket", r.Dir, "-c", cmd)
	s := string(out)
	if err == nil && (strings.HasPrefix(s, "% ") || strings.Contains(s, "failed to connect to any daemons")) {
		err = fmt.Errorf("vtysh -c %q: %s", cmd, strings.TrimSpace(s))
	}
	return s, err
}

// VtyshJSON runs a vtysh command ending in "json" and decodes its output.
func (r *Router) VtyshJSON(ctx context.Context, cmd string, v any) error {
	out, err := r.Vtysh(ctx, cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == "" {
		return fmt.Errorf("vtysh -c %q printed nothing", cmd)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("decoding the output of vtysh -c %q: %w", cmd, err)
	}
	return nil
}

// Stop stops bgpd, bfdd and zebra.
func (r *Router) Stop() {
	r.stopOnce.Do(func() {
		for _, p := range []*Process{r.BGPd, r.BFDd, r.Zebra} {
			if p != nil {
				p.Stop(5 * time.Second)
			}
		}
	})
}

// FRRRoute is one entry of FRR's `show ip route json` (and `show ipv6 route
// json`), which maps each prefix to a list of these.
type FRRRoute struct {
	Prefix   string `json:"prefix"`
	Protocol string `json:"protocol"`
	Selected bool   `json:"selected"`
	Nexthops []struct {
		IP     string `json:"ip"`
		Active bool   `json:"active"`
	} `json:"nexthops"`
}

// FRRBFDPeer is one entry of FRR's `show bfd peers json`, only the fields
// the tests read. Intervals are in milliseconds.
type FRRBFDPeer struct {
	Peer                  string `json:"peer"`
	Status                string `json:"status"` // "up", "down", "init"
	DetectMultiplier      int    `json:"detect-multiplier"`
	ReceiveInterval       int    `json:"receive-interval"`
	TransmitInterval      int    `json:"transmit-interval"`
	RemoteReceiveInterval int    `json:"remote-receive-interval"`
	RemoteTransmit        int    `json:"remote-transmit-interval"`
	RemoteDetectMult      int    `json:"remote-detect-multiplier"`
}

// BFDPeers returns bfdd's sessions.
func (r *Router) BFDPeers(ctx context.Context) ([]FRRBFDPeer, error) {
	var out []FRRBFDPeer
	return out, r.VtyshJSON(ctx, "show bfd peers json", &out)
}
