package ipam

import (
	"net/netip"
	"slices"
	"strings"
)

// want is a Request checked and reduced to what must be allocated.
type want struct {
	families []Family      // wanted, in order of preference
	ips      [2]netip.Addr // asked for, by famIndex
	policy   Policy
}

func famIndex(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// normalize checks req and works out the families it wants: SingleStack
// takes the first family, RequireDualStack both, PreferDualStack those
// listed (the provider lists both on a dual-stack cluster).
func normalize(req Request) (want, error) {
	var w want
	if req.Key == "" {
		return w, newError(ErrInvalidRequest, "the request names no Service")
	}
	for _, f := range req.Families {
		if f != IPv4 && f != IPv6 {
			return w, newError(ErrInvalidRequest, "%d is not an IP family; use 4 or 6", int(f))
		}
		if !slices.Contains(w.families, f) {
			w.families = append(w.families, f)
		}
	}
	if len(w.families) == 0 {
		w.families = []Family{IPv4}
	}
	w.policy = req.Policy
	switch req.Policy {
	case SingleStack:
		w.families = w.families[:1]
	case RequireDualStack:
		if len(w.families) == 1 {
			w.families = append(w.families, other(w.families[0]))
		}
	case PreferDualStack:
	default:
		return w, newError(ErrInvalidRequest, "%d is not an IP family policy", int(req.Policy))
	}
	for _, ip := range req.IPs {
		if !ip.IsValid() {
			return w, newError(ErrInvalidRequest, "an invalid address was asked for")
		}
		ip = ip.Unmap()
		f := FamilyOf(ip)
		if !slices.Contains(w.families, f) {
			return w, newError(ErrInvalidRequest, "%s is an %s address, but the Service's ipFamilies allow only %s", ip, f, familyList(w.families))
		}
		fi := famIndex(f)
		if w.ips[fi].IsValid() && w.ips[fi] != ip {
			return w, newError(ErrInvalidRequest, "two %s addresses were asked for (%s and %s); ask for at most one per family", f, w.ips[fi], ip)
		}
		w.ips[fi] = ip
	}
	return w, nil
}

// asksOtherThan reports whether an address of a family other than f was asked for.
func (w want) asksOtherThan(f Family) bool {
	return w.ips[famIndex(other(f))].IsValid()
}

func other(f Family) Family {
	if f == IPv4 {
		return IPv6
	}
	return IPv4
}

func familyList(fams []Family) string {
	s := make([]string, len(fams))
	for i, f := range fams {
		s[i] = f.String()
	}
	return strings.Join(s, " and ")
}
