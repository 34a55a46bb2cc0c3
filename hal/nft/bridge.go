package nft

import (
	"errors"
	"fmt"
	"os"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ErrEnslaved: a port already belongs to another bridge or bond, which
// would forward around the ruleset.
var ErrEnslaved = errors.New("nft: port is enslaved to another master")

// ErrNoBrNetfilter: bridged IP would never reach the inet table, and the
// bridge table would drop all of it as unjudged.
var ErrNoBrNetfilter = errors.New("nft: br_netfilter is not loaded (modprobe br_netfilter)")

// Attach joins the two ports with the kernel bridge (made if missing),
// with bridged IPv4 and IPv6 handed to the inet table (nf_call_iptables,
// nf_call_ip6tables), and brings it up. It refuses until a ruleset is in
// force, so the link is never bridged unfiltered.
func (e *Enforcer) Attach() error {
	e.mu.Lock()
	applied := e.rs != nil
	e.mu.Unlock()
	if !applied {
		return fmt.Errorf("nft: attach %s: %w", e.o.Bridge, ErrNoRuleset)
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		return ErrNoBrNetfilter
	}
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: e.o.NetNS})
	if err != nil {
		return fmt.Errorf("nft: rtnetlink: %w", err)
	}
	defer c.Close()
	on := driver.BridgeEnableEnabled
	stp := driver.BridgeStpStateDisabled
	br, err := linkByName(c, e.o.Bridge)
	if err != nil {
		if err := c.Link.New(&rtnetlink.LinkMessage{
			Family: unix.AF_UNSPEC,
			Attributes: &rtnetlink.LinkAttributes{Name: e.o.Bridge, Info: &rtnetlink.LinkInfo{
				Kind: "bridge",
				Data: &driver.Bridge{NfCallIptables: &on, NfCallIp6tables: &on, StpState: &stp},
			}},
		}); err != nil {
			return fmt.Errorf("nft: create %s: %w", e.o.Bridge, err)
		}
		if br, err = linkByName(c, e.o.Bridge); err != nil {
			return err
		}
	} else if err := c.Link.Set(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC, Type: br.Type, Index: br.Index,
		Attributes: &rtnetlink.LinkAttributes{Info: &rtnetlink.LinkInfo{Kind: "bridge",
			Data: &driver.Bridge{NfCallIptables: &on, NfCallIp6tables: &on}}},
	}); err != nil {
		return fmt.Errorf("nft: %s: hand bridged IP to the inet table: %w", e.o.Bridge, err)
	}
	for _, p := range []string{e.o.Inside, e.o.Outside} {
		m, err := linkByName(c, p)
		if err != nil {
			return err
		}
		switch master := masterOf(m); master {
		case br.Index:
			continue
		case 0:
		default:
			return fmt.Errorf("%w: %s (index %d)", ErrEnslaved, p, master)
		}
		if err := c.Link.SetMaster(m.Index, br.Index, nil); err != nil {
			return fmt.Errorf("nft: put %s in %s: %w", p, e.o.Bridge, err)
		}
	}
	if err := c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Type: br.Type, Index: br.Index,
		Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		return fmt.Errorf("nft: bring %s up: %w", e.o.Bridge, err)
	}
	return nil
}

// Detach takes the ports out of the bridge and deletes it: the link is cut.
func (e *Enforcer) Detach() error {
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: e.o.NetNS})
	if err != nil {
		return fmt.Errorf("nft: rtnetlink: %w", err)
	}
	defer c.Close()
	br, err := linkByName(c, e.o.Bridge)
	if err != nil {
		return nil // not attached
	}
	for _, p := range []string{e.o.Inside, e.o.Outside} {
		if m, err := linkByName(c, p); err == nil && masterOf(m) == br.Index {
			if err := c.Link.RemoveMaster(m.Index); err != nil {
				return fmt.Errorf("nft: take %s out of %s: %w", p, e.o.Bridge, err)
			}
		}
	}
	if err := c.Link.Delete(br.Index); err != nil {
		return fmt.Errorf("nft: delete %s: %w", e.o.Bridge, err)
	}
	return nil
}

func linkByName(c *rtnetlink.Conn, name string) (*rtnetlink.LinkMessage, error) {
	links, err := c.Link.List()
	if err != nil {
		return nil, fmt.Errorf("nft: list links: %w", err)
	}
	for i := range links {
		if links[i].Attributes != nil && links[i].Attributes.Name == name {
			return &links[i], nil
		}
	}
	return nil, fmt.Errorf("nft: no link %s", name)
}

func masterOf(m *rtnetlink.LinkMessage) uint32 {
	if m.Attributes != nil && m.Attributes.Master != nil {
		return *m.Attributes.Master
	}
	return 0
}
