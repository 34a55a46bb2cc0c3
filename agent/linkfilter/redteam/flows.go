package redteam

import (
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// More addresses: a second approved host, transit destinations abroad.
const (
	approved2 = "198.51.100.9"
	approved3 = "198.51.100.8"
	foreign2  = "203.0.113.9"
	approv26  = "2001:db8:aa::9"
	foreign26 = "2001:db8:bb::9"
)

func (c *corpus) flows() {
	c.spoofed()
	c.transit()
	c.direction()
	c.legitFlows()
}

// synFrame is a SYN from src to dst:dport arriving on side.
func (c *corpus) synFrame(side Side, tg tags, src, dst string, dport uint16) Frame {
	p := c.port()
	return drop(side, fmt.Sprintf("SYN %s -> %s arriving %v%s", hp(src, p), hp(dst, dport), side, tg),
		tagged(side, tg, pkt(src, dst, synTo(p, dport))...))
}

// spoofed: each address belongs to one side; a source from the other
// side is a spoof, whatever the policy would say of the flow.
func (c *corpus) spoofed() {
	c.add("spoof-domestic-from-outside", "spoofed",
		c.synFrame(Outside, untagged, cust2, cust, webPort),
		c.synFrame(Outside, untagged, cust26, cust6, webPort),
		c.synFrame(Outside, dot1q, cust2, cust, webPort),
		c.synFrame(Outside, untagged, cust2, approved, webPort))
	c.add("spoof-foreign-from-inside", "spoofed",
		c.synFrame(Inside, untagged, approved, foreign, webPort),
		c.synFrame(Inside, untagged, approved6, foreign6, webPort),
		c.synFrame(Inside, qinq, foreign2, cust2, webPort))
	// A colluding inside host forges an approved remote's address: the
	// flow would be an approved inbound one if the source were believed.
	c.add("spoof-approved-remote-from-inside", "spoofed",
		c.synFrame(Inside, untagged, approved2, cust, webPort),
		c.synFrame(Inside, untagged, approved2, cust2, webPort),
		c.synFrame(Inside, untagged, approv26, cust6, webPort),
		c.synFrame(Inside, untagged, approved2, approved, webPort))
}

// transit: neither end domestic; it needs an approval that covers where
// the traffic really goes, and the responder here is not approved.
func (c *corpus) transit() {
	p := c.port()
	c.add("transit-to-unapproved", "transit",
		c.synFrame(Outside, untagged, approved, foreign2, webPort),
		c.synFrame(Outside, untagged, approved6, foreign26, webPort),
		drop(Outside, fmt.Sprintf("UDP %s -> %s arriving outside", hp(approved, p), hp(foreign2, webPort)),
			frame(Outside, pkt(approved, foreign2, udpSeg(p, webPort, filler(300)))...)),
		c.synFrame(Outside, untagged, foreign2, approved, 22))
}

// direction: only a SYN without ACK opens a TCP flow, its sender is the
// initiator and the service is the responder's port; a reply-direction
// packet cannot choose it.
func (c *corpus) direction() {
	// The forged SYN-ACK trick: the client's port 443 is made to look like
	// the approved service, so the session to port 22 would be approved.
	// From the inside the customer plays the responder on 443, then sends
	// a real SYN from port 443 to port 22: its service is 22.
	forged := func(name, cli, srv string, tg tags) {
		cn := newConn(webPort, 22)
		cn.next[server]++ // as if a SYN from port 22 had been seen
		sc := &script{cn: cn, cli: cli, srv: srv, tg: tg}
		fs := sc.frames(Drop, step{client, syn | ack, 0}, step{client, psh | ack, 300}, step{server, psh | ack, 600}, step{client, psh | ack, 300})
		sc.cn = newConn(webPort, 22)
		c.add(name, "tcp-no-syn", append(fs, sc.frames(Drop, step{client, syn, 0}, step{client, psh | ack, 400})...)...)
	}
	forged("forged-synack-from-443", cust, approved, untagged)
	forged("forged-synack-from-443-ipv6", cust6, approved6, untagged)
	forged("forged-synack-from-443-dot1q", cust, approved3, dot1q)

	// The same trick played from the outside: the foreign host "answers"
	// from 443 a connection the customer never opened to it.
	cn := newConn(22, webPort)
	cn.next[client]++
	sc := &script{cn: cn, cli: cust, srv: approved}
	c.add("forged-synack-from-outside", "tcp-no-syn",
		sc.frames(Drop, step{server, syn | ack, 0}, step{server, psh | ack, 300}, step{client, psh | ack, 300}, step{server, psh | ack, 900})...)

	// Mid-stream segments of sessions no SYN was seen of (no pickup
	// grace), to the unapproved port 22 and to the approved 443 alike.
	var mid []Frame
	for _, v := range []struct {
		cli, srv string
		dport    uint16
	}{{cust, approved, 22}, {cust, approved, webPort}, {cust6, approved6, 22}, {cust6, approved6, webPort}} {
		sc := &script{cn: newConn(c.port(), v.dport), cli: v.cli, srv: v.srv, note: ", no SYN seen"}
		sc.cn.seg(client, syn, nil)
		sc.cn.seg(server, syn|ack, nil)
		mid = append(mid, sc.frames(Drop, step{client, ack, 0}, step{client, psh | ack, 300}, step{server, psh | ack, 900}, step{client, fin | ack, 0})...)
	}
	c.add("midstream-no-syn", "tcp-no-syn", mid...)

	// UDP: the first packet's sender is the initiator; its own port 443
	// does not make the flow the approved service.
	var udp []Frame
	for _, v := range [][2]string{{cust, approved}, {cust6, approved6}} {
		udp = append(udp,
			drop(Inside, fmt.Sprintf("DNS query UDP %s -> %s", hp(v[0], webPort), hp(v[1], 53)), frame(Inside, pkt(v[0], v[1], udpSeg(webPort, 53, dnsMsg(false)))...)),
			drop(Outside, fmt.Sprintf("DNS answer UDP %s -> %s, the reply", hp(v[1], 53), hp(v[0], webPort)), frame(Outside, pkt(v[1], v[0], udpSeg(53, webPort, dnsMsg(true)))...)))
	}
	c.add("udp-sender-chooses-port", "tcp-no-syn", udp...)
}

func (c *corpus) legitFlows() {
	c.handshake("approved-handshake", conv{cli: cust, srv: approved})
	c.handshake("approved-handshake-ipv6", conv{cli: cust6, srv: approved6})
	c.handshake("approved-handshake-dot1q", conv{cli: cust, srv: approved, tg: dot1q})
	c.handshake("approved-handshake-qinq-ipv6", conv{cli: cust6, srv: approved6, tg: qinq})
	c.handshake("approved-inbound-handshake", conv{cli: approved, srv: cust, clientSide: Outside})
	c.handshake("approved-inbound-handshake-ipv6", conv{cli: approved6, srv: cust6, clientSide: Outside})

	var udp []Frame
	for _, v := range [][2]string{{cust, approved}, {cust6, approved6}} {
		p := c.port()
		udp = append(udp,
			pass(Inside, fmt.Sprintf("UDP %s -> %s", hp(v[0], p), hp(v[1], webPort)), frame(Inside, pkt(v[0], v[1], udpSeg(p, webPort, filler(1200)))...)),
			pass(Outside, fmt.Sprintf("UDP %s -> %s", hp(v[1], webPort), hp(v[0], p)), frame(Outside, pkt(v[1], v[0], udpSeg(webPort, p, filler(1200)))...)),
			pass(Inside, fmt.Sprintf("UDP %s -> %s", hp(v[0], p), hp(v[1], webPort)), frame(Inside, pkt(v[0], v[1], udpSeg(p, webPort, filler(60)))...)))
	}
	c.add("approved-udp", "legit", udp...)

	id := c.port()
	echo := func(side Side, src, dst string, typ layers.ICMPv4TypeCode) Frame {
		return pass(side, fmt.Sprintf("ICMP echo %v %s -> %s", typ, src, dst), frame(side, ip4(src, dst, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: typ, Id: id, Seq: 1}, gopacket.Payload(filler(56))))
	}
	echo6 := func(side Side, src, dst string, typ uint8) Frame {
		return pass(side, fmt.Sprintf("ICMPv6 echo type %d %s -> %s", typ, src, dst), frame(side, ip6(src, dst, layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}, &layers.ICMPv6Echo{Identifier: id, SeqNumber: 1}, gopacket.Payload(filler(56))))
	}
	c.add("approved-ping", "legit",
		echo(Inside, cust, approved, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)),
		echo(Outside, approved, cust, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0)),
		echo6(Inside, cust6, approved6, layers.ICMPv6TypeEchoRequest),
		echo6(Outside, approved6, cust6, layers.ICMPv6TypeEchoReply))
}
