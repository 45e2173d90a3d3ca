// Package ipam hands out load-balancer addresses from configured pools. It
// knows nothing of Kubernetes: the provider turns a Service into a Request.
//
// Allocate, Release and Seed cost O(log n) in the number of allocated
// addresses (plus, with a sharing key, the addresses held under that key),
// whatever the size of the pools: a 2001:db8::/64 pool is fine. Used
// addresses are indexed per range as merged intervals, never as a bitmap or
// a list of free addresses. SetPools re-indexes everything, O(n log n).
package ipam

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
)

// Allocator holds the pools and who holds which address. It is safe for
// concurrent use.
type Allocator struct {
	mu     sync.Mutex
	pools  []*poolState // in configuration order
	byName map[string]*poolState
	addrs  map[netip.Addr]*addrUse
	keys   map[string]*holding
	// shared maps a sharing key to the addresses held under it, so a
	// Service with that key can find a sharer without a scan.
	shared  map[string]map[netip.Addr]struct{}
	orphans map[netip.Addr]struct{}
}

type poolState struct {
	Pool
	ranges []*rangeState
	has    [2]bool    // by famIndex: the pool has addresses of the family
	size   [2]float64 // addresses the pool can hand out, by famIndex
	inUse  [2]int     // addresses held, by famIndex
}

// addrUse is one address in use and the Services holding it (more than one
// when shared).
type addrUse struct {
	pool    *poolState // the first pool holding the address; nil for an orphan
	holders []*holding
}

// holding is what one key holds and what of its last request still matters.
type holding struct {
	key   string
	pool  string // the pool the request named, if any
	share sharing
	ips   []netip.Addr
}

// sharing is what decides whether Services may share an address.
type sharing struct {
	key     string // allow-shared-ip
	backend string
	ports   []Port
}

func sharingOf(req *Request) sharing {
	return sharing{key: req.SharingKey, backend: req.Backend, ports: req.Ports}
}

// New returns an allocator over pools (in order of preference).
func New(pools []Pool) *Allocator {
	a := &Allocator{
		addrs:   map[netip.Addr]*addrUse{},
		keys:    map[string]*holding{},
		shared:  map[string]map[netip.Addr]struct{}{},
		orphans: map[netip.Addr]struct{}{},
	}
	a.SetPools(pools)
	return a
}

// SetPools replaces the pools, for a configuration reload. Allocations are
// never moved: an address that is in no pool any more stays with its
// holders and is returned as an Orphan so that the caller can warn about it.
// Pools are expected not to overlap (the config loader refuses that); where
// they do, an address belongs to the first pool holding it.
func (a *Allocator) SetPools(pools []Pool) []Orphan {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pools = make([]*poolState, 0, len(pools))
	a.byName = make(map[string]*poolState, len(pools))
	for _, p := range pools {
		ps := &poolState{Pool: p}
		ps.Ranges = slices.Clone(p.Ranges)
		for _, r := range p.Ranges {
			rs := newRangeState(r, p.AvoidBuggyIPs)
			ps.ranges = append(ps.ranges, rs)
			fi := famIndex(FamilyOf(r.First))
			ps.has[fi] = true
			ps.size[fi] += rs.size()
		}
		a.pools = append(a.pools, ps)
		if _, dup := a.byName[p.Name]; !dup {
			a.byName[p.Name] = ps
		}
	}
	clear(a.orphans)
	for ip, use := range a.addrs {
		use.pool = a.poolOf(ip)
		a.markUsed(ip, use)
	}
	return a.orphanList()
}

// Orphans returns the addresses held outside every pool, by key and address.
func (a *Allocator) Orphans() []Orphan {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.orphanList()
}

func (a *Allocator) orphanList() []Orphan {
	var out []Orphan
	for ip := range a.orphans {
		for _, h := range a.addrs[ip].holders {
			out = append(out, Orphan{Key: h.key, IP: ip})
		}
	}
	slices.SortFunc(out, func(x, y Orphan) int {
		return cmp.Or(cmp.Compare(x.Key, y.Key), x.IP.Compare(y.IP))
	})
	return out
}

// Allocate returns the addresses for req.Key, allocating them if needed.
//
// Allocation is sticky: a key keeps what it holds while the request stays
// compatible with it (same pool constraint, requested addresses among those
// held, families still wanted, sharing still allowed), even when its pool
// has shrunk or its admission rules changed. A changed request moves it; if
// the move fails, the key keeps its old addresses and the error says why.
//
// req.Admits is called with the allocator locked and must not call back.
func (a *Allocator) Allocate(req Request) (Allocation, error) {
	w, err := normalize(req)
	if err != nil {
		return Allocation{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.keys[req.Key]
	if old != nil {
		if ips, ok := a.keep(old, &req, w); ok {
			if slices.Equal(ips, old.ips) && req.SharingKey == old.share.key {
				// Nothing moves (the common resync): update in place; the
				// indexes depend only on addresses and sharing key.
				*old = *newHolding(req, old.ips)
				return a.allocationOf(old), nil
			}
			a.detach(old)
			return a.attach(newHolding(req, ips)), nil
		}
		a.detach(old)
	}
	ips, err := a.assign(&req, w, old)
	if err != nil {
		if old != nil {
			a.attach(old)
		}
		return Allocation{}, err
	}
	return a.attach(newHolding(req, ips)), nil
}

// Release frees what key holds. Releasing a key that holds nothing is a no-op.
func (a *Allocator) Release(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.keys[key]; h != nil {
		a.detach(h)
	}
}

// Get returns what key holds.
func (a *Allocator) Get(key string) (Allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.keys[key]
	if h == nil {
		return Allocation{}, false
	}
	return a.allocationOf(h), true
}

// Seed records that req.Key already holds ips (read back from a Service's
// status at start). Addresses outside every pool are accepted as orphans.
// An address held by another key that may not share it is refused with an
// *AddressInUseError and nothing is recorded; seeding the oldest Services
// first makes the oldest win. Seeding a key again replaces what it held.
func (a *Allocator) Seed(req Request, ips []netip.Addr) error {
	req.IPs = nil
	w, err := normalize(req)
	if err != nil {
		return err
	}
	if len(ips) == 0 {
		return newError(ErrInvalidRequest, "no addresses to seed for %s", req.Key)
	}
	var byFam [2]netip.Addr
	for _, ip := range ips {
		if !ip.IsValid() {
			return newError(ErrInvalidRequest, "%s has an invalid address", req.Key)
		}
		ip = ip.Unmap()
		fi := famIndex(FamilyOf(ip))
		if byFam[fi].IsValid() && byFam[fi] != ip {
			return newError(ErrInvalidRequest, "%s holds two %s addresses (%s and %s); a Service has at most one per family",
				req.Key, FamilyOf(ip), byFam[fi], ip)
		}
		byFam[fi] = ip
	}
	// Order by the Service's family preference; a family it no longer wants goes last.
	order := append(slices.Clone(w.families), IPv4, IPv6)
	var sorted []netip.Addr
	for _, f := range order {
		if ip := byFam[famIndex(f)]; ip.IsValid() && !slices.Contains(sorted, ip) {
			sorted = append(sorted, ip)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range sorted {
		if use := a.addrs[ip]; use != nil {
			if err := checkShare(ip, use, req.Key, sharingOf(&req)); err != nil {
				return err
			}
		}
	}
	if old := a.keys[req.Key]; old != nil {
		a.detach(old)
	}
	a.attach(newHolding(req, sorted))
	return nil
}

// Stats returns the size and use of every pool and family it has, in pool order.
func (a *Allocator) Stats() []PoolStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []PoolStats
	for _, p := range a.pools {
		for _, f := range []Family{IPv4, IPv6} {
			if fi := famIndex(f); p.has[fi] {
				out = append(out, PoolStats{Pool: p.Name, Family: f, Size: p.size[fi], InUse: p.inUse[fi]})
			}
		}
	}
	return out
}

// keep returns the addresses old may keep under the new request, or false
// when the request asks for something else.
func (a *Allocator) keep(old *holding, req *Request, w want) ([]netip.Addr, bool) {
	var kept [2]netip.Addr
	var pool *poolState
	for _, ip := range old.ips {
		f := FamilyOf(ip)
		fi := famIndex(f)
		if !slices.Contains(w.families, f) {
			continue // dropped, e.g. dual-stack turned single
		}
		if want := w.ips[fi]; want.IsValid() && want != ip {
			return nil, false
		}
		use := a.addrs[ip]
		if req.Pool != "" {
			named := a.byName[req.Pool]
			inNamed := named != nil && named.contains(ip)
			// An orphan stays with a Service whose pool went away, as long
			// as the Service still asks for the pool it was given.
			if !inNamed && !(use.pool == nil && old.pool == req.Pool) {
				return nil, false
			}
		}
		if checkShare(ip, use, req.Key, sharingOf(req)) != nil {
			return nil, false
		}
		kept[fi] = ip
		if pool == nil {
			pool = use.pool
		}
	}
	var missing []Family
	for _, f := range w.families {
		fi := famIndex(f)
		if kept[fi].IsValid() {
			continue
		}
		if w.ips[fi].IsValid() {
			return nil, false // asks for an address of a family it does not hold
		}
		missing = append(missing, f)
	}
	if len(missing) == len(w.families) {
		return nil, false
	}
	if len(missing) > 0 {
		// The other family comes from the same pool; without it,
		// RequireDualStack starts afresh and PreferDualStack makes do.
		var got []netip.Addr
		var err error
		if pool != nil && pool.hasAll(missing) {
			got, err = a.tryPool(pool, req, w, missing, nil)
		}
		if (got == nil || err != nil) && w.policy == RequireDualStack {
			return nil, false
		}
		for _, ip := range got {
			kept[famIndex(FamilyOf(ip))] = ip
		}
	}
	var out []netip.Addr
	for _, f := range w.families {
		if ip := kept[famIndex(f)]; ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out, true
}

// assign chooses a pool and addresses for a request whose key holds
// nothing; prev is what the key held before, reused where it still fits.
func (a *Allocator) assign(req *Request, w want, prev *holding) ([]netip.Addr, error) {
	cands, explicit, err := a.candidates(req, w)
	if err != nil {
		return nil, err
	}
	var errs []error
	addErr := func(err error) {
		if !slices.ContainsFunc(errs, func(e error) bool { return e.Error() == err.Error() }) {
			errs = append(errs, err)
		}
	}
	complete := 0
	for _, p := range cands {
		if !p.hasAll(w.families) {
			continue
		}
		complete++
		ips, err := a.tryPool(p, req, w, w.families, prev)
		if err == nil {
			return ips, nil
		}
		addErr(err)
	}
	if len(w.families) > 1 {
		if w.policy == RequireDualStack {
			if complete == 0 {
				return nil, noDualStackError(cands, explicit)
			}
			return nil, joinErrors(errs)
		}
		// PreferDualStack: one family will do, in order of preference,
		// unless an address was asked for, which decides the family.
		for _, f := range w.families {
			if w.asksOtherThan(f) {
				continue
			}
			for _, p := range cands {
				if !p.hasAll([]Family{f}) {
					continue
				}
				ips, err := a.tryPool(p, req, w, []Family{f}, prev)
				if err == nil {
					return ips, nil
				}
				addErr(err)
			}
		}
	}
	if len(errs) == 0 {
		if explicit {
			return nil, newError(ErrNoPool, "pool %q has no %s addresses", cands[0].Name, familyList(w.families))
		}
		return nil, newError(ErrNoPool, "no pool that admits this Service has %s addresses", familyList(w.families))
	}
	return nil, joinErrors(errs)
}

// candidates returns the pools a request may draw from, in order, and
// whether the request itself chose the pool (by name or by address).
func (a *Allocator) candidates(req *Request, w want) ([]*poolState, bool, error) {
	var chosen *poolState
	if req.Pool != "" {
		chosen = a.byName[req.Pool]
		if chosen == nil {
			return nil, false, newError(ErrUnknownPool, "pool %q does not exist; name a pool from the cloud-config", req.Pool)
		}
	}
	var byIP *poolState
	var firstIP netip.Addr
	for _, f := range w.families {
		ip := w.ips[famIndex(f)]
		if !ip.IsValid() {
			continue
		}
		p := chosen
		switch {
		case chosen != nil && !chosen.contains(ip):
			return nil, false, newError(ErrNotInPool, "%s is not in pool %q; ask for an address inside it or drop the pool annotation", ip, chosen.Name)
		case chosen == nil:
			if p = a.poolOf(ip); p == nil {
				return nil, false, newError(ErrNotInPool, "%s is not in any pool; ask for an address inside a configured pool", ip)
			}
		}
		if byIP != nil && p != byIP {
			return nil, false, newError(ErrInvalidRequest, "%s (pool %q) and %s (pool %q) are in different pools; ask for addresses from one pool",
				firstIP, byIP.Name, ip, p.Name)
		}
		byIP, firstIP = p, ip
	}
	if chosen == nil {
		chosen = byIP
	}
	if chosen != nil {
		if !admits(req, chosen.Name) {
			return nil, false, newError(ErrPoolNotAllowed, "pool %q does not admit this Service (see the pool's namespaces and serviceSelector)", chosen.Name)
		}
		return []*poolState{chosen}, true, nil
	}
	if len(a.pools) == 0 {
		return nil, false, newError(ErrNoPool, "no pools are configured; add one to the cloud-config")
	}
	var out []*poolState
	for _, p := range a.pools {
		if p.AutoAssign && admits(req, p.Name) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, false, newError(ErrNoPool, "no pool with autoAssign admits this Service; name a pool with the pool annotation, or check the pools' autoAssign, namespaces and serviceSelector")
	}
	return out, false, nil
}

// tryPool picks one address per family from p, or says why it cannot.
func (a *Allocator) tryPool(p *poolState, req *Request, w want, fams []Family, prev *holding) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(fams))
	for _, f := range fams {
		ip, err := a.pick(p, req, f, w.ips[famIndex(f)], prev)
		if err != nil {
			return nil, err
		}
		out = append(out, ip)
	}
	return out, nil
}

func (a *Allocator) pick(p *poolState, req *Request, f Family, asked netip.Addr, prev *holding) (netip.Addr, error) {
	if asked.IsValid() {
		if p.AvoidBuggyIPs && isBuggy(asked) {
			return netip.Addr{}, newError(ErrNotInPool, "%s ends in .0 or .255, which pool %q does not hand out (avoidBuggyIPs)", asked, p.Name)
		}
		if use := a.addrs[asked]; use != nil {
			if err := checkShare(asked, use, req.Key, sharingOf(req)); err != nil {
				return netip.Addr{}, err
			}
		}
		return asked, nil
	}
	if prev != nil {
		for _, ip := range prev.ips {
			if FamilyOf(ip) == f && p.contains(ip) && !(p.AvoidBuggyIPs && isBuggy(ip)) {
				if use := a.addrs[ip]; use == nil || checkShare(ip, use, req.Key, sharingOf(req)) == nil {
					return ip, nil
				}
			}
		}
	}
	if req.SharingKey != "" {
		if ip, ok := a.sharerIn(p, f, req); ok {
			return ip, nil
		}
	}
	for _, r := range p.ranges {
		if FamilyOf(r.First) != f {
			continue
		}
		if ip, ok := r.firstFree(); ok {
			return ip, nil
		}
	}
	fi := famIndex(f)
	return netip.Addr{}, &PoolExhaustedError{Pool: p.Name, Family: f, InUse: p.inUse[fi], Size: p.size[fi]}
}

// sharerIn returns the lowest address of family f in p held under
// req.SharingKey that req may share.
func (a *Allocator) sharerIn(p *poolState, f Family, req *Request) (netip.Addr, bool) {
	var best netip.Addr
	for ip := range a.shared[req.SharingKey] {
		if FamilyOf(ip) != f || !p.contains(ip) || (best.IsValid() && best.Less(ip)) {
			continue
		}
		if checkShare(ip, a.addrs[ip], req.Key, sharingOf(req)) == nil {
			best = ip
		}
	}
	return best, best.IsValid()
}

// checkShare says whether key, sharing s, may hold ip beside its current holders.
func checkShare(ip netip.Addr, use *addrUse, key string, s sharing) error {
	for _, h := range use.holders {
		if h.key == key {
			continue
		}
		e := &AddressInUseError{IP: ip, Holder: h.key}
		switch {
		case s.key == "" || h.share.key == "":
			e.Conflict = NotShareable
		case s.key != h.share.key:
			e.Conflict, e.key = SharingKeyDiffers, h.share.key
		case s.backend != h.share.backend:
			e.Conflict = BackendDiffers
		default:
			port, collides := portCollision(h.share.ports, s.ports)
			if !collides {
				continue
			}
			e.Conflict, e.port = PortCollides, port
		}
		return e
	}
	return nil
}

func portCollision(held, asked []Port) (Port, bool) {
	for _, x := range held {
		for _, y := range asked {
			if x.Port == y.Port && protocol(x.Protocol) == protocol(y.Protocol) {
				return Port{Protocol: protocol(x.Protocol), Port: x.Port}, true
			}
		}
	}
	return Port{}, false
}

// protocol spells a Service port protocol canonically; empty means TCP,
// as in the Kubernetes API.
func protocol(p string) string {
	switch p {
	case "", "TCP", "tcp":
		return "TCP"
	case "udp":
		return "UDP"
	case "sctp":
		return "SCTP"
	}
	return p
}

func (a *Allocator) attach(h *holding) Allocation {
	a.keys[h.key] = h
	for _, ip := range h.ips {
		use := a.addrs[ip]
		if use == nil {
			use = &addrUse{pool: a.poolOf(ip)}
			a.addrs[ip] = use
			a.markUsed(ip, use)
		}
		use.holders = append(use.holders, h)
		if k := h.share.key; k != "" {
			set := a.shared[k]
			if set == nil {
				set = map[netip.Addr]struct{}{}
				a.shared[k] = set
			}
			set[ip] = struct{}{}
		}
	}
	return a.allocationOf(h)
}

func (a *Allocator) detach(h *holding) {
	if a.keys[h.key] == h {
		delete(a.keys, h.key)
	}
	for _, ip := range h.ips {
		use := a.addrs[ip]
		if use == nil {
			continue
		}
		use.holders = slices.DeleteFunc(use.holders, func(x *holding) bool { return x == h })
		if k := h.share.key; k != "" && !slices.ContainsFunc(use.holders, func(x *holding) bool { return x.share.key == k }) {
			delete(a.shared[k], ip)
			if len(a.shared[k]) == 0 {
				delete(a.shared, k)
			}
		}
		if len(use.holders) == 0 {
			delete(a.addrs, ip)
			a.markFree(ip, use)
		}
	}
}

// markUsed records a newly used address in the range indexes and counts.
func (a *Allocator) markUsed(ip netip.Addr, use *addrUse) {
	if use.pool == nil {
		a.orphans[ip] = struct{}{}
		return
	}
	use.pool.inUse[famIndex(FamilyOf(ip))]++
	a.forRanges(ip, (*rangeState).add)
}

func (a *Allocator) markFree(ip netip.Addr, use *addrUse) {
	if use.pool == nil {
		delete(a.orphans, ip)
		return
	}
	use.pool.inUse[famIndex(FamilyOf(ip))]--
	a.forRanges(ip, (*rangeState).remove)
}

// forRanges applies fn to every range holding ip (one, unless pools overlap).
func (a *Allocator) forRanges(ip netip.Addr, fn func(*rangeState, netip.Addr)) {
	for _, p := range a.pools {
		for _, r := range p.ranges {
			if r.Contains(ip) {
				fn(r, ip)
			}
		}
	}
}

func (a *Allocator) poolOf(ip netip.Addr) *poolState {
	for _, p := range a.pools {
		if p.contains(ip) {
			return p
		}
	}
	return nil
}

func (a *Allocator) allocationOf(h *holding) Allocation {
	out := Allocation{IPs: slices.Clone(h.ips)}
	for _, ip := range h.ips {
		if use := a.addrs[ip]; use != nil && use.pool != nil {
			out.Pool = use.pool.Name
			break
		}
	}
	return out
}

func (p *poolState) contains(ip netip.Addr) bool {
	for _, r := range p.ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

func (p *poolState) hasAll(fams []Family) bool {
	for _, f := range fams {
		if !p.has[famIndex(f)] {
			return false
		}
	}
	return true
}

func newHolding(req Request, ips []netip.Addr) *holding {
	s := sharingOf(&req)
	s.ports = slices.Clone(s.ports) // the caller's slice may change
	return &holding{key: req.Key, pool: req.Pool, share: s, ips: ips}
}

func admits(req *Request, pool string) bool { return req.Admits == nil || req.Admits(pool) }

func noDualStackError(cands []*poolState, explicit bool) error {
	if explicit {
		p := cands[0]
		missing := IPv6
		if !p.has[famIndex(IPv4)] {
			missing = IPv4
		}
		return newError(ErrNoDualStackPool, "pool %q has no %s addresses, so it cannot give both IPv4 and IPv6 (ipFamilyPolicy RequireDualStack); use a pool with both families or PreferDualStack", p.Name, missing)
	}
	return newError(ErrNoDualStackPool, "no pool can give both IPv4 and IPv6 to this Service (ipFamilyPolicy RequireDualStack); add a pool with addresses of both families, or use PreferDualStack")
}
