package nft

import (
	"net/netip"
	"slices"
)

// span is a run of addresses of one family, lo to hi inclusive, and the
// index of what covers it (a candidate group, or 0 in a plain set).
type span struct {
	lo, hi netip.Addr
	target int
}

// listed is one prefix and what it points at.
type listed struct {
	pfx    netip.Prefix
	target int
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// flatten turns prefixes of one family, which may nest but never repeat,
// into disjoint spans in ascending order, each taking the target of the
// innermost prefix that covers it, with neighbours of the same target
// merged. An interval set in the kernel cannot hold overlapping elements;
// the innermost prefix is what a longest-prefix match would find.
//
// chain, when not nil, is told each prefix as it is entered, with the
// target of the prefix directly around it (-1: none), and returns the
// target to use for it: how a prefix inherits its supernets' approvals.
func flatten(ps []listed, chain func(inner, outer int) int) []span {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b listed) int {
		if c := a.pfx.Addr().Compare(b.pfx.Addr()); c != 0 {
			return c
		}
		return a.pfx.Bits() - b.pfx.Bits() // a supernet before what it holds
	})
	var out []span
	emit := func(lo, hi netip.Addr, target int) {
		if n := len(out); n > 0 && out[n-1].target == target && out[n-1].hi.Next() == lo {
			out[n-1].hi = hi
			return
		}
		out = append(out, span{lo, hi, target})
	}
	type open struct {
		end    netip.Addr
		target int
	}
	var stack []open
	var cursor netip.Addr // first address not yet emitted; invalid past the end
	closeTo := func(limit netip.Addr, all bool) {
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if !all && !top.end.Less(limit) {
				return
			}
			if cursor.IsValid() && !top.end.Less(cursor) {
				emit(cursor, top.end, top.target)
				cursor = top.end.Next()
			}
			stack = stack[:len(stack)-1]
		}
	}
	for _, l := range ps {
		start := l.pfx.Masked().Addr()
		closeTo(start, false)
		outer := -1
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			outer = top.target
			if cursor.IsValid() && cursor.Less(start) {
				emit(cursor, start.Prev(), top.target)
			}
		}
		cursor = start
		target := l.target
		if chain != nil {
			target = chain(l.target, outer)
		}
		stack = append(stack, open{lastAddr(l.pfx), target})
	}
	closeTo(netip.Addr{}, true)
	return out
}

// merged is the union of prefixes as disjoint ranges: a plain interval set.
func merged(ps []netip.Prefix) []span {
	// Duplicates and nesting are both allowed here: drop what a kept
	// prefix already covers, then flatten.
	ls := make([]listed, 0, len(ps))
	seen := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			ls = append(ls, listed{p, 0})
		}
	}
	return flatten(ls, nil)
}
