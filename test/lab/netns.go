package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const netnsDir = "/run/netns"

var (
	nameSeq   atomic.Int64
	sweepOnce sync.Once
	// staleName matches the namespaces this package creates: bm<pid>x<n>-<name>.
	staleName = regexp.MustCompile(`^bm([0-9]+)x[0-9]+-`)
)

// uniqueName returns a name unique to this process and run: bm<pid>x<n>-<name>.
func uniqueName(name string) string {
	return fmt.Sprintf("bm%dx%d-%s", os.Getpid(), nameSeq.Add(1), name)
}

// SweepStaleNamespaces deletes namespaces left by lab processes that are no
// longer alive (a crashed or killed test run). Namespaces of live processes
// and every other namespace are left alone.
func SweepStaleNamespaces(ctx context.Context) error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive (or not ours to judge)
		}
		if _, err := run(ctx, "ip", "netns", "delete", e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addNetns creates a namespace with lo up.
func addNetns(ctx context.Context, name string) error {
	sweepOnce.Do(func() {
		// Best effort: a namespace we cannot delete does not stop this run.
		if err := SweepStaleNamespaces(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "lab: sweeping stale namespaces: %v\n", err)
		}
	})
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("creating network namespace: %w", err)
	}
	if _, err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	// Addresses the lab assigns are unique by construction; DAD would only
	// delay them.
	if _, err := run(ctx, "ip", "netns", "exec", name, "sysctl", "-qw",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		return err
	}
	return nil
}

func deleteNetns(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := run(ctx, "ip", "netns", "delete", name)
	return err
}

// Segment is an L2 segment: a Linux bridge "br0" inside its own switch
// namespace, so nothing of it lives in the root namespace.
type Segment struct {
	Name  string
	Netns string // the switch namespace holding br0 and the switch-side veths

	env   *Env
	fatal func(format string, args ...any) // set by the testing.TB variant

	mu    sync.Mutex
	ports int
	hosts []*Host
}

// NewSegment creates a segment; it and every host on it are removed at Close.
func (e *Env) NewSegment(name string) (*Segment, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &Segment{Name: name, Netns: uniqueName("sw-" + name), env: e}
	if err := addNetns(ctx, s.Netns); err != nil {
		return nil, fmt.Errorf("segment %q: %w", name, err)
	}
	e.onClose(s.close)
	// No STP (ports forward at once) and no multicast snooping (NDP to
	// solicited-node groups is flooded without MLD state).
	if _, err := run(ctx, "ip", "-n", s.Netns, "link", "add", "br0", "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"); err != nil {
		return nil, fmt.Errorf("segment %q: %w", name, err)
	}
	if _, err := run(ctx, "ip", "-n", s.Netns, "link", "set", "br0", "up"); err != nil {
		return nil, fmt.Errorf("segment %q: %w", name, err)
	}
	return s, nil
}

func (s *Segment) close() {
	s.mu.Lock()
	hosts := s.hosts
	s.hosts = nil
	s.mu.Unlock()
	for i := len(hosts) - 1; i >= 0; i-- {
		hosts[i].close()
	}
	if err := deleteNetns(s.Netns); err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
	}
}

// Hosts returns the hosts created on the segment with AddHost/NewHost.
func (s *Segment) Hosts() []*Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Host(nil), s.hosts...)
}

// AddHost is NewHost that fails the test (or panics outside tests) on error.
func (s *Segment) AddHost(name string, addrs ...netip.Prefix) *Host {
	h, err := s.NewHost(name, addrs...)
	if err != nil {
		if s.fatal != nil {
			s.fatal("lab: %v", err)
		}
		panic(err)
	}
	return h
}

// NewHost creates a namespace for a host with an "eth0" attached to the
// segment carrying addrs (IPv6 without DAD), and lo up. The host is removed
// with the segment.
func (s *Segment) NewHost(name string, addrs ...netip.Prefix) (*Host, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &Host{Name: name, Netns: uniqueName(name), env: s.env, ifaces: map[string]*port{}}
	if err := addNetns(ctx, h.Netns); err != nil {
		return nil, fmt.Errorf("host %q: %w", name, err)
	}
	s.mu.Lock()
	s.hosts = append(s.hosts, h)
	s.mu.Unlock()
	if err := h.AddInterface(s, "eth0", addrs...); err != nil {
		return nil, err
	}
	h.MAC = h.ifaces["eth0"].mac
	return h, nil
}

// Host is a network namespace attached to one or more segments.
type Host struct {
	Name  string
	Netns string
	MAC   net.HardwareAddr // eth0's
	Addrs []netip.Prefix   // eth0's

	env *Env

	mu      sync.Mutex
	ifaces  map[string]*port
	closers []func()
}

// port is one host interface and its switch-side peer.
type port struct {
	seg    *Segment
	swName string // the veth in the segment's namespace
	mac    net.HardwareAddr
}

// AddInterface attaches the host to seg with a new interface ifname carrying
// addrs, for multi-homed hosts such as routers.
func (h *Host) AddInterface(seg *Segment, ifname string, addrs ...netip.Prefix) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seg.mu.Lock()
	seg.ports++
	swName := fmt.Sprintf("p%d", seg.ports)
	seg.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("host %q interface %s on segment %q: %w", h.Name, ifname, seg.Name, err)
	}

	// Created inside the switch namespace with the peer moved straight into
	// the host's: the root namespace never sees either end.
	if _, err := run(ctx, "ip", "-n", seg.Netns, "link", "add", swName, "type", "veth",
		"peer", "name", ifname, "netns", h.Netns); err != nil {
		return wrap(err)
	}
	for _, args := range [][]string{
		{"ip", "-n", seg.Netns, "link", "set", swName, "master", "br0"},
		{"ip", "-n", seg.Netns, "link", "set", swName, "up"},
		{"ip", "-n", h.Netns, "link", "set", ifname, "up"},
	} {
		if _, err := run(ctx, args...); err != nil {
			return wrap(err)
		}
	}
	for _, a := range addrs {
		args := []string{"ip", "-n", h.Netns, "addr", "add", a.String(), "dev", ifname}
		if a.Addr().Is6() {
			args = append(args, "nodad")
		}
		if _, err := run(ctx, args...); err != nil {
			return wrap(err)
		}
	}
	mac, err := linkMAC(ctx, h.Netns, ifname)
	if err != nil {
		return wrap(err)
	}
	h.mu.Lock()
	h.ifaces[ifname] = &port{seg: seg, swName: swName, mac: mac}
	if ifname == "eth0" {
		h.Addrs = append([]netip.Prefix(nil), addrs...)
	}
	h.mu.Unlock()
	return nil
}

func linkMAC(ctx context.Context, netns, ifname string) (net.HardwareAddr, error) {
	out, err := run(ctx, "ip", "-n", netns, "-j", "link", "show", "dev", ifname)
	if err != nil {
		return nil, err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return nil, fmt.Errorf("reading the MAC address of %s: unexpected output %q", ifname, out)
	}
	return net.ParseMAC(links[0].Address)
}

// InterfaceMAC returns the MAC address of one of the host's interfaces.
func (h *Host) InterfaceMAC(ifname string) (net.HardwareAddr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.ifaces[ifname]
	if !ok {
		return nil, fmt.Errorf("host %q has no interface %q", h.Name, ifname)
	}
	return p.mac, nil
}

// Exec runs args inside the host's namespace and returns the combined output.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", h.Netns}, args...)...)
}

// Start runs args inside the host's namespace as a long-running process with
// its output in <Env.Dir>/<host>-<name>.log; it is stopped when the host goes.
func (h *Host) Start(name string, args ...string) (*Process, error) {
	p, err := startProcess(h.env.Dir, h.Name+"-"+name, append([]string{"ip", "netns", "exec", h.Netns}, args...))
	if err != nil {
		return nil, err
	}
	h.env.track(p)
	h.onClose(func() { p.Stop(5 * time.Second) })
	return p, nil
}

// SetLink takes eth0 down or up on both ends (host and switch side), the way
// a pulled cable would.
func (h *Host) SetLink(up bool) error {
	return h.SetInterfaceLink("eth0", up)
}

// SetInterfaceLink is SetLink for any of the host's interfaces.
func (h *Host) SetInterfaceLink(ifname string, up bool) error {
	h.mu.Lock()
	p, ok := h.ifaces[ifname]
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("host %q has no interface %q", h.Name, ifname)
	}
	state := "down"
	if up {
		state = "up"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := run(ctx, "ip", "-n", p.seg.Netns, "link", "set", p.swName, state); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "-n", h.Netns, "link", "set", ifname, state)
	return err
}

// AddRoute adds (or replaces) a route to dst via a gateway on a segment.
func (h *Host) AddRoute(dst netip.Prefix, via netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := run(ctx, "ip", "-n", h.Netns, "route", "replace", dst.String(), "via", via.String())
	return err
}

// Sysctl sets a sysctl inside the host's namespace, e.g.
// Sysctl("net.ipv4.ip_forward", "1") on a router.
func (h *Host) Sysctl(key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Exec(ctx, "sysctl", "-qw", key+"="+value)
	return err
}

func (h *Host) onClose(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closers = append(h.closers, f)
}

func (h *Host) close() {
	h.mu.Lock()
	closers := h.closers
	h.closers = nil
	h.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if err := deleteNetns(h.Netns); err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
	}
}
