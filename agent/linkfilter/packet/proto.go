package packet

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") the
// decoder walks or names.
const (
	ProtoHopByHop uint8 = 0
	ProtoICMP     uint8 = 1
	ProtoIGMP     uint8 = 2
	ProtoIPIP     uint8 = 4 // IPv4 encapsulated
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoIPv6     uint8 = 41 // IPv6 encapsulated
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoGRE      uint8 = 47
	ProtoESP      uint8 = 50
	ProtoAH       uint8 = 51
	ProtoICMPv6   uint8 = 58
	ProtoNoNext   uint8 = 59
	ProtoDstOpts  uint8 = 60
	ProtoOSPF     uint8 = 89
	ProtoEtherIP  uint8 = 97
	ProtoPIM      uint8 = 103
	ProtoVRRP     uint8 = 112
	ProtoSCTP     uint8 = 132
	ProtoMobility uint8 = 135
	ProtoHIP      uint8 = 139
	ProtoShim6    uint8 = 140
)

// EtherTypes the decoder walks or names.
const (
	EtherIPv4      uint16 = 0x0800
	EtherARP       uint16 = 0x0806
	EtherTEB       uint16 = 0x6558 // transparent Ethernet bridging (GRE, Geneve)
	EtherRARP      uint16 = 0x8035
	EtherVLAN      uint16 = 0x8100
	EtherIPv6      uint16 = 0x86dd
	EtherSlow      uint16 = 0x8809 // LACP, marker
	EtherMPLS      uint16 = 0x8847
	EtherMPLSMulti uint16 = 0x8848
	EtherPPPoEDisc uint16 = 0x8863
	EtherPPPoE     uint16 = 0x8864
	EtherQinQ      uint16 = 0x88a8
	EtherLLDP      uint16 = 0x88cc
	EtherQinQOld   uint16 = 0x9100
)

// UDP ports of the tunnels the decoder sees into.
const (
	PortVXLAN      uint16 = 4789
	PortVXLANLinux uint16 = 8472 // the Linux vxlan driver's default before the IANA port
	PortVXLANGPE   uint16 = 4790
	PortGeneve     uint16 = 6081
	PortGTPU       uint16 = 2152
)

// TCP flag bits in Layer.TCPFlags.
const (
	TCPFin = 1 << 0
	TCPSyn = 1 << 1
	TCPRst = 1 << 2
	TCPPsh = 1 << 3
	TCPAck = 1 << 4
)

// ICMPv6 types of neighbour discovery (RFC 4861) and multicast listener
// discovery (RFC 2710, RFC 3810).
const (
	icmp6MLDQuery    = 130
	icmp6MLDReport   = 131
	icmp6MLDDone     = 132
	icmp6RouterSol   = 133
	icmp6RouterAdv   = 134
	icmp6NeighborSol = 135
	icmp6NeighborAdv = 136
	icmp6Redirect    = 137
	icmp6MLDv2Report = 143
)
