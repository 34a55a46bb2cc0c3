package nft

import "github.com/google/nftables"

// SetFault makes the next transactions send break after their sets are
// added and before their rules: how tests make the kernel refuse one
// halfway.
func (e *Enforcer) SetFault(f func(cc *nftables.Conn, table *nftables.Table)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f == nil {
		e.fault = nil
		return
	}
	e.fault = func(cc *nftables.Conn, p *plan) { f(cc, p.ip) }
}

// Compiled is how big rs compiles: chains, rules and set elements.
func Compiled(rs *Ruleset, o Options) (chains, rules, elements int, err error) {
	if err := o.defaults(); err != nil {
		return 0, 0, 0, err
	}
	p, err := compile(rs, &o, 1)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, c := range p.chains {
		rules += len(c.rules)
	}
	return len(p.chains), rules, p.elements, nil
}
