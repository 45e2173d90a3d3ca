package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// TakePorts makes h accept traffic for fixed load-balancer ports the way
// ServiceProxy does for Services (a policy rule per port, a local route in
// ProxyTable), for tests that run speakers without an API server. Nothing is
// bound: h's kernel holds no address for the VIPs. The rules go with h's
// namespace.
func (h *Host) TakePorts(ports ...ServicePort) error {
	cmds := map[string][]string{}
	vips := map[netip.Addr]bool{}
	for _, sp := range ports {
		fam := "-4"
		if sp.IP.Is6() {
			fam = "-6"
		}
		if !vips[sp.IP] {
			vips[sp.IP] = true
			cmds[fam] = append(cmds[fam], "route replace "+routeSpec(sp.IP))
		}
		cmds[fam] = append(cmds[fam], "rule add "+ruleSpec(sp))
	}
	for fam, lines := range cmds {
		if err := ipBatch(h.Netns, fam, lines); err != nil {
			return fmt.Errorf("host %q: taking %d ports: %w", h.Name, len(ports), err)
		}
	}
	return nil
}

// AddrsIn returns the addresses on any of h's interfaces that lie in one of
// the prefixes: a node of DESIGN decision 6 holds none inside its pools.
func (h *Host) AddrsIn(prefixes ...netip.Prefix) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, "ip", "-o", "addr", "show")
	if err != nil {
		return nil, fmt.Errorf("host %q: ip addr: %w: %s", h.Name, err, out)
	}
	var found []netip.Addr
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" && f[i] != "inet6" {
				continue
			}
			p, err := netip.ParsePrefix(f[i+1])
			if err != nil {
				continue
			}
			for _, pool := range prefixes {
				if pool.Contains(p.Addr()) {
					found = append(found, p.Addr())
				}
			}
		}
	}
	return found, nil
}

// DialTCP connects to addr from inside h's network namespace (the socket
// is created there and stays there), for test clients that must not start
// a process per request.
func (h *Host) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(h.Netns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}
