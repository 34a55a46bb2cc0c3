// Package pcapfile reads pcap and pcapng capture files and writes pcap: the
// formats of tcpdump.org's pcap(5) and the IETF's pcapng draft, and their
// link types (LinkType, the LINKTYPE_ registry).
//
// It replaces gopacket's pcapgo on the device: pcapgo imports
// gopacket/layers for its LinkType alone, and layers' init tables and
// decoders are about 2 MB of a stripped linkguard binary (BENCHMARKS.md,
// "Firmware bundles"). The tests hold it to pcapgo on captures pcapgo
// writes, and fuzz it.
//
// Every length is the file's and treated as hostile: a record keeps at
// most MaxFrame bytes of its frame (the rest is skipped, and the frame
// reads as truncated), blocks that are parsed rather than skipped are
// bounded, and a length that disagrees with its block is an error, never
// a panic or an allocation the file chose.
//
// It imports the standard library only.
package pcapfile
