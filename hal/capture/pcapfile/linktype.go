package pcapfile

import "strconv"

// LinkType is a capture's link-layer header type, a LINKTYPE_ number of
// tcpdump.org's registry (pcap's header and pcapng's interface blocks carry
// it; pcap's upper 16 bits, FCS flags, are not part of it).
type LinkType uint16

// The link types the packet filter decodes, with the numbers of the
// registry.
const (
	LinkTypeNull      LinkType = 0   // BSD loopback, host byte order
	LinkTypeEthernet  LinkType = 1   // IEEE 802.3
	LinkTypeRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkTypeLoop      LinkType = 108 // OpenBSD loopback, network byte order
	LinkTypeLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkTypeIPv4      LinkType = 228
	LinkTypeIPv6      LinkType = 229
	LinkTypeLinuxSLL2 LinkType = 276 // Linux cooked capture v2
)

// linkNames name the types captures commonly carry, as tcpdump and
// Wireshark show them.
var linkNames = map[LinkType]string{
	LinkTypeNull: "Null", LinkTypeEthernet: "Ethernet", 6: "Token Ring", 7: "ARCNET (BSD)", 8: "SLIP", 9: "PPP",
	10: "FDDI", 50: "PPP in HDLC", 51: "PPPoE", 104: "Cisco HDLC", 105: "802.11", 107: "Frame Relay",
	LinkTypeRaw: "Raw", LinkTypeLoop: "Loop", LinkTypeLinuxSLL: "Linux SLL", 117: "PFLog", 119: "802.11 Prism",
	127: "802.11 radiotap", 129: "ARCNET (Linux)", 163: "802.11 AVS", 192: "PPI", 195: "802.15.4",
	201: "Bluetooth HCI H4", 220: "USB", 226: "IPNET", 227: "SocketCAN", LinkTypeIPv4: "IPv4",
	LinkTypeIPv6: "IPv6", 239: "NFLOG", 253: "Netlink", LinkTypeLinuxSLL2: "Linux SLL2",
}

// Name is the type's name, "" for one without a name here.
func (t LinkType) Name() string { return linkNames[t] }

// String names the link type, or gives its number.
func (t LinkType) String() string {
	if n, ok := linkNames[t]; ok {
		return n
	}
	return "LinkType(" + strconv.Itoa(int(t)) + ")"
}
