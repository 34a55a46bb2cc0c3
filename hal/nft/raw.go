package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// raw is a netfilter netlink socket of our own, for what google/nftables
// does not do: the ruleset generation, a byte-exact read-back of our
// tables, and the guard table, which lives as long as this socket.
type raw struct {
	nl *netlink.Conn
}

func dialRaw(netns int) (*raw, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("nft: netfilter socket: %w", err)
	}
	return &raw{nl: nl}, nil
}

func (r *raw) close() error { return r.nl.Close() }

func nfgen(family uint8) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

func nftType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// generation is the ruleset's generation: every committed transaction in
// the namespace, ours or anyone's, moves it on.
func (r *raw) generation() (uint32, error) {
	msgs, err := r.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC),
	})
	if err != nil {
		return 0, fmt.Errorf("nft: ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), ad.Err()
			}
		}
	}
	return 0, errors.New("nft: ruleset generation: no id in the answer")
}

// dump runs one dump request and returns the messages' attribute bytes.
func (r *raw) dump(family uint8, msg int, attrs ...netlink.Attribute) ([][]byte, error) {
	data := nfgen(family)
	if len(attrs) > 0 {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return nil, err
		}
		data = append(data, b...)
	}
	msgs, err := r.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(msg), Flags: netlink.Request | netlink.Dump},
		Data:   data,
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		if len(m.Data) >= 4 {
			out = append(out, m.Data[4:])
		}
	}
	return out, nil
}

func str(s string) []byte { return append([]byte(s), 0) }

// attr returns the first attribute of type typ in b.
func attr(b []byte, typ uint16) []byte {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ad.Next() {
		if ad.Type() == typ {
			return ad.Bytes()
		}
	}
	return nil
}

func cstr(b []byte) string { return strings.TrimRight(string(b), "\x00") }

// fingerprint reads our tables back and digests them: table flags, every
// chain with its hook and rules as the kernel encodes them, every set's
// definition, every object's name and type (not counter values), and,
// with elements, every set's elements (elementDigest). Two reads of an
// untouched ruleset give the same digest; a rule, element, chain or flag
// changed, added or removed by anyone gives another. Keys name what they
// cover, so a difference can be told.
//
// Elements are the expensive part: the kernel restarts a set's walk for
// every 32 KiB of a dump, so 200,000 elements take about a second.
func (r *raw) fingerprint(name string, elements bool) (map[string]string, error) {
	fp := map[string]string{}
	for _, f := range families {
		fam := uint8(f)
		pre := familyName(fam) + " "
		tables, err := r.dump(fam, unix.NFT_MSG_GETTABLE)
		if err != nil {
			return nil, fmt.Errorf("nft: read back tables: %w", err)
		}
		found := false
		for _, t := range tables {
			if cstr(attr(t, unix.NFTA_TABLE_NAME)) == name {
				found = true
				fp[pre+"table"] = hex.EncodeToString(attr(t, unix.NFTA_TABLE_FLAGS))
			}
		}
		if !found {
			continue // a missing table differs from the digest taken when it was there
		}
		chains, err := r.dump(fam, unix.NFT_MSG_GETCHAIN)
		if err != nil {
			return nil, fmt.Errorf("nft: read back chains: %w", err)
		}
		for _, c := range chains {
			if cstr(attr(c, unix.NFTA_CHAIN_TABLE)) == name {
				fp[pre+"chain "+cstr(attr(c, unix.NFTA_CHAIN_NAME))] = digest(c)
			}
		}
		rules, err := r.dump(fam, unix.NFT_MSG_GETRULE, netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: str(name)})
		if err != nil {
			return nil, fmt.Errorf("nft: read back rules: %w", err)
		}
		byChain := map[string][][]byte{}
		for _, rl := range rules {
			c := cstr(attr(rl, unix.NFTA_RULE_CHAIN))
			byChain[c] = append(byChain[c], rl)
		}
		for c, rl := range byChain {
			fp[pre+"rules "+c] = digest(rl...)
		}
		sets, err := r.dump(fam, unix.NFT_MSG_GETSET, netlink.Attribute{Type: unix.NFTA_SET_TABLE, Data: str(name)})
		if err != nil {
			return nil, fmt.Errorf("nft: read back sets: %w", err)
		}
		for _, s := range sets {
			sn := cstr(attr(s, unix.NFTA_SET_NAME))
			fp[pre+"set "+sn] = digest(s)
			if !elements {
				continue
			}
			msgs, err := r.dump(fam, unix.NFT_MSG_GETSETELEM,
				netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: str(name)},
				netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: str(sn)})
			if err != nil {
				return nil, fmt.Errorf("nft: read back set %s: %w", sn, err)
			}
			var elems []string
			for _, m := range msgs {
				ad, err := netlink.NewAttributeDecoder(attr(m, unix.NFTA_SET_ELEM_LIST_ELEMENTS))
				if err != nil {
					return nil, err
				}
				for ad.Next() {
					elems = append(elems, decodeElement(ad.Bytes()))
				}
			}
			fp[pre+"elements "+sn] = elementDigest(elems)
		}
		objs, err := r.dump(fam, unix.NFT_MSG_GETOBJ, netlink.Attribute{Type: unix.NFTA_OBJ_TABLE, Data: str(name)})
		if err != nil {
			return nil, fmt.Errorf("nft: read back objects: %w", err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, cstr(attr(o, unix.NFTA_OBJ_NAME))+"/"+hex.EncodeToString(attr(o, unix.NFTA_OBJ_TYPE)))
		}
		sort.Strings(names)
		fp[pre+"objects"] = digest([]byte(strings.Join(names, ",")))
	}
	return fp, nil
}

// element is a set element as the digest sees it: key, whether it ends an
// interval, and its verdict (code and chain) in a map.
func element(key []byte, end bool, v *expr.Verdict) string {
	var b strings.Builder
	b.WriteString(hex.EncodeToString(key))
	if end {
		b.WriteString(" end")
	}
	if v != nil {
		b.WriteString(" " + strconv.FormatInt(int64(int32(v.Kind)), 10) + " " + v.Chain)
	}
	return b.String()
}

// decodeElement reads one element of a GETSETELEM dump.
func decodeElement(b []byte) string {
	key := attr(attr(b, unix.NFTA_SET_ELEM_KEY), unix.NFTA_DATA_VALUE)
	end := false
	if f := attr(b, unix.NFTA_SET_ELEM_FLAGS); len(f) == 4 {
		end = binary.BigEndian.Uint32(f)&unix.NFT_SET_ELEM_INTERVAL_END != 0
	}
	var v *expr.Verdict
	if vb := attr(attr(b, unix.NFTA_SET_ELEM_DATA), unix.NFTA_DATA_VERDICT); vb != nil {
		v = &expr.Verdict{Chain: cstr(attr(vb, unix.NFTA_VERDICT_CHAIN))}
		if c := attr(vb, unix.NFTA_VERDICT_CODE); len(c) == 4 {
			v.Kind = expr.VerdictKind(int32(binary.BigEndian.Uint32(c)))
		}
	}
	return element(key, end, v)
}

// elementDigest digests elements whatever their order: the kernel dumps a
// set in its own.
func elementDigest(elems []string) string {
	sort.Strings(elems)
	h := sha256.New()
	for _, e := range elems {
		h.Write([]byte(e))
		h.Write([]byte{'\n'})
	}
	return strconv.Itoa(len(elems)) + " " + hex.EncodeToString(h.Sum(nil)[:12])
}

// planElements is the element digest of every set of p, as fingerprint
// would read it back.
func planElements(p *plan) map[string]string {
	fp := map[string]string{}
	for _, s := range p.sets {
		elems := make([]string, len(s.elems))
		for i, e := range s.elems {
			elems[i] = element(e.Key, e.IntervalEnd, e.VerdictData)
		}
		fp[familyName(uint8(s.set.Table.Family))+" elements "+s.set.Name] = elementDigest(elems)
	}
	return fp
}

// families are our tables' families.
var families = []nftables.TableFamily{nftables.TableFamilyBridge, nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}

func familyName(f uint8) string {
	switch f {
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	}
	return "family" + strconv.Itoa(int(f))
}

func digest(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// differences names what differs between two fingerprints, sorted; keys
// of elements count only if got has elements.
func differences(want, got map[string]string) []string {
	withElements := false
	for k := range got {
		if strings.Contains(k, " elements ") {
			withElements = true
		}
	}
	var d []string
	for k, v := range want {
		if !withElements && strings.Contains(k, " elements ") {
			continue
		}
		switch g, ok := got[k]; {
		case !ok:
			d = append(d, k+" missing")
		case g != v:
			d = append(d, k+" changed")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, k+" added")
		}
	}
	// A missing table says it all.
	gone := map[string]bool{}
	for _, l := range d {
		if fam, ok := strings.CutSuffix(l, " table missing"); ok {
			gone[fam] = true
		}
	}
	d = slices.DeleteFunc(d, func(l string) bool {
		fam, rest, _ := strings.Cut(l, " ")
		return gone[fam] && rest != "table missing"
	})
	sort.Strings(d)
	return d
}

// guardTable is the bridge table, owned by this socket, that drops every
// frame leaving the bridge without the judged mark. No other process can
// change or delete it (`nft flush ruleset` passes it by), and the kernel
// deletes it when the socket closes: while the agent runs, the link is
// never forwarded unjudged, even with our ruleset flushed; when the agent
// is gone, the persistent ruleset goes on filtering alone.
// google/nftables cannot set a table's flags, so this batch is hand-built.
func (r *raw) guard(name string, mark uint32) error {
	t := name + "_guard"
	enc := func(attrs ...netlink.Attribute) []byte {
		b, _ := netlink.MarshalAttributes(attrs)
		return b
	}
	be := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	hook := enc(
		netlink.Attribute{Type: unix.NFTA_HOOK_HOOKNUM, Data: be(unix.NF_INET_POST_ROUTING)},
		netlink.Attribute{Type: unix.NFTA_HOOK_PRIORITY, Data: be(uint32(int32(100)))},
	)
	var list []byte
	for _, e := range []expr.Any{metaLoad(expr.MetaKeyMARK), bitwise(ne32(mark)), cmp(expr.CmpOpEq, ne32(0)), drop()} {
		b, err := expr.Marshal(unix.NFPROTO_BRIDGE, e)
		if err != nil {
			return err
		}
		list = append(list, enc(netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})...)
	}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}},
		nftMsg(unix.NFT_MSG_NEWTABLE, enc(
			netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: str(t)},
			netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: be(tableFlagOwner)})),
		nftMsg(unix.NFT_MSG_NEWCHAIN, enc(
			netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: str(t)},
			netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: str("postrouting")},
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
			netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: be(1)}, // accept
			netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: str("filter")})),
		nftMsg(unix.NFT_MSG_NEWRULE, enc(
			netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: str(t)},
			netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: str("postrouting")},
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: list})),
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}},
	}
	if _, err := r.nl.SendMessages(msgs); err != nil {
		return fmt.Errorf("nft: guard: %w", err)
	}
	for want := 3; want > 0; {
		got, err := r.nl.Receive()
		if err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				err = fmt.Errorf("%w (an owner table needs Linux 5.12)", err)
			}
			return fmt.Errorf("nft: guard table %s: %w", t, err)
		}
		want -= len(got)
	}
	return nil
}

// tableFlagOwner is NFT_TABLE_F_OWNER: the table dies with its socket.
const tableFlagOwner = 0x2

func nftMsg(t int, data []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: nftType(t), Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
		Data:   append(nfgen(unix.NFPROTO_BRIDGE), data...),
	}
}
