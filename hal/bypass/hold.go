package bypass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// BridgeName is the kernel bridge that carries a fail-open link while the
// agent is not running (the same name the manual bypass in the README uses).
const BridgeName = "lgbypass"

// tableName is the owner table holding the bridge shut.
const tableName = "linkguard_hold"

// ErrEnslaved: a port belongs to a bridge or bond other than lgbypass, so
// the kernel would forward around the agent.
var ErrEnslaved = errors.New("bypass: port is enslaved to another master")

// Hold keeps a fail-open link's bypass bridge shut while it is open.
type Hold struct {
	nl *netlink.Conn
}

// Arm prepares a fail-open link between inside and outside: it first holds
// both ports' ingress shut (an owner table on a netlink socket Hold keeps
// open), then puts them in the lgbypass bridge (made if missing) and brings
// it up. From then on the link is cut only while the agent decides so: if
// the process ends, the kernel drops the hold and the bridge forwards.
func Arm(inside, outside string) (*Hold, error) {
	h, err := hold(inside, outside)
	if err != nil {
		return nil, err
	}
	if err := joinBridge(inside, outside); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// Close releases the hold: the bridge forwards (fail open), as if the
// process had ended.
func (h *Hold) Close() error {
	if h == nil || h.nl == nil {
		return nil
	}
	err := h.nl.Close()
	h.nl = nil
	return err
}

// hold creates the owner table with one netdev ingress chain per port,
// policy drop, in one batch on a socket that stays open.
func hold(ports ...string) (*Hold, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("bypass: netfilter socket: %w", err)
	}
	msgs := []netlink.Message{batchMsg(unix.NFNL_MSG_BATCH_BEGIN)}
	ae := newEncoder()
	ae.String(unix.NFTA_TABLE_NAME, tableName)
	ae.Uint32(unix.NFTA_TABLE_FLAGS, tableFlagOwner)
	msgs = append(msgs, nftMsg(unix.NFT_MSG_NEWTABLE, ae))
	for i, port := range ports {
		ae := newEncoder()
		ae.String(unix.NFTA_CHAIN_TABLE, tableName)
		ae.String(unix.NFTA_CHAIN_NAME, fmt.Sprintf("hold%d", i))
		ae.Nested(unix.NFTA_CHAIN_HOOK, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(unix.NFTA_HOOK_HOOKNUM, unix.NF_NETDEV_INGRESS)
			nae.Uint32(unix.NFTA_HOOK_PRIORITY, 0)
			nae.String(unix.NFTA_HOOK_DEV, port)
			return nil
		})
		ae.Uint32(unix.NFTA_CHAIN_POLICY, nfDrop)
		ae.String(unix.NFTA_CHAIN_TYPE, "filter")
		msgs = append(msgs, nftMsg(unix.NFT_MSG_NEWCHAIN, ae))
	}
	msgs = append(msgs, batchMsg(unix.NFNL_MSG_BATCH_END))
	if err := send(nl, msgs); err != nil {
		nl.Close()
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w (an owner table needs Linux 5.12 with nf_tables netdev support)", err)
		}
		return nil, fmt.Errorf("bypass: hold %v shut: %w", ports, err)
	}
	return &Hold{nl: nl}, nil
}

// nfDrop is the NF_DROP verdict.
const nfDrop = 0

// tableFlagOwner is NFT_TABLE_F_OWNER: the table dies with its socket.
const tableFlagOwner = 0x2

// send writes a batch and waits for every acknowledgement; the first
// error the kernel reports is returned.
func send(nl *netlink.Conn, msgs []netlink.Message) error {
	if _, err := nl.SendMessages(msgs); err != nil {
		return err
	}
	want := 0
	for _, m := range msgs {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			want++
		}
	}
	for want > 0 {
		got, err := nl.Receive()
		if err != nil {
			return err
		}
		want -= len(got)
	}
	return nil
}

func batchMsg(t int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(t), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	}
}

// newEncoder encodes nf_tables attributes, which are big-endian.
func newEncoder() *netlink.AttributeEncoder {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	return ae
}

func nftMsg(t int, ae *netlink.AttributeEncoder) netlink.Message {
	data, _ := ae.Encode()
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: append(nfgen(unix.NFPROTO_NETDEV, 0), data...),
	}
}

// nfgen is struct nfgenmsg: family, version 0, resource id (big-endian).
func nfgen(family uint8, res uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(res >> 8), byte(res)}
}

// joinBridge puts both ports in lgbypass, making it if missing, and brings
// everything up. A port in another master is refused.
func joinBridge(ports ...string) error {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("bypass: rtnetlink: %w", err)
	}
	defer c.Close()
	br, err := net.InterfaceByName(BridgeName)
	if err != nil {
		err = c.Link.New(&rtnetlink.LinkMessage{
			Family:     unix.AF_UNSPEC,
			Attributes: &rtnetlink.LinkAttributes{Name: BridgeName, Info: &rtnetlink.LinkInfo{Kind: "bridge"}},
		})
		if err != nil {
			return fmt.Errorf("bypass: create %s: %w", BridgeName, err)
		}
		if br, err = net.InterfaceByName(BridgeName); err != nil {
			return fmt.Errorf("bypass: %s: %w", BridgeName, err)
		}
	}
	for _, p := range ports {
		ifi, master, err := masterOf(c, p)
		if err != nil {
			return err
		}
		switch master {
		case uint32(br.Index):
			continue
		case 0:
		default:
			return fmt.Errorf("%w: %s (index %d)", ErrEnslaved, p, master)
		}
		if err := c.Link.SetMaster(uint32(ifi), uint32(br.Index), nil); err != nil {
			return fmt.Errorf("bypass: put %s in %s: %w", p, BridgeName, err)
		}
	}
	if err := setUp(c, br.Index); err != nil {
		return fmt.Errorf("bypass: bring %s up: %w", BridgeName, err)
	}
	return nil
}

// Release takes the ports out of lgbypass (deleting it once empty), for a
// fail-closed link; a port in another master is refused, since the kernel
// would forward around the agent.
func Release(ports ...string) error {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("bypass: rtnetlink: %w", err)
	}
	defer c.Close()
	br, brErr := net.InterfaceByName(BridgeName)
	for _, p := range ports {
		ifi, master, err := masterOf(c, p)
		if err != nil {
			return err
		}
		switch {
		case master == 0:
		case brErr == nil && master == uint32(br.Index):
			if err := c.Link.RemoveMaster(uint32(ifi)); err != nil {
				return fmt.Errorf("bypass: take %s out of %s: %w", p, BridgeName, err)
			}
		default:
			return fmt.Errorf("%w: %s (index %d)", ErrEnslaved, p, master)
		}
	}
	if brErr == nil {
		if err := c.Link.Delete(uint32(br.Index)); err != nil {
			return fmt.Errorf("bypass: delete %s: %w", BridgeName, err)
		}
	}
	return nil
}

// masterOf returns a port's index and its master's (0: none).
func masterOf(c *rtnetlink.Conn, name string) (int, uint32, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, 0, fmt.Errorf("bypass: %s: %w", name, err)
	}
	m, err := c.Link.Get(uint32(ifi.Index))
	if err != nil {
		return 0, 0, fmt.Errorf("bypass: %s: %w", name, err)
	}
	if m.Attributes != nil && m.Attributes.Master != nil {
		return ifi.Index, *m.Attributes.Master, nil
	}
	return ifi.Index, 0, nil
}

func setUp(c *rtnetlink.Conn, index int) error {
	m, err := c.Link.Get(uint32(index))
	if err != nil {
		return err
	}
	return c.Link.Set(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC, Type: m.Type, Index: uint32(index),
		Flags: unix.IFF_UP, Change: unix.IFF_UP,
	})
}
