package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TPACKET_V2 rings, mapped and walked here rather than through afpacket:
// the bridge must know whether a frame is waiting without blocking (to send
// its queued frames before it sleeps), copy a frame out with its VLAN tag
// restored without allocating, and fill a transmit ring; afpacket exposes
// none of that.

// tp2HdrLen is TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): where a transmit
// slot's frame starts (no PACKET_TX_HAS_OFF).
const tp2HdrLen = 32

// ErrTxBusy: the transmit ring stayed full (the driver did not take the
// queued frames) for the port's wait bound; the frame was not sent.
var ErrTxBusy = errors.New("capture: transmit ring full")

// vnetHdrLen is sizeof(struct virtio_net_hdr).
const vnetHdrLen = 10

// ring is one mmap'ed TPACKET_V2 ring of n slots of fsz bytes, perBlock
// of them at the start of each block of bsz bytes (a slot never straddles
// two blocks, so a block may end in a gap).
type ring struct {
	mem      []byte
	fsz      int
	bsz      int
	perBlock int
	n        int
	head     int // next slot to read (rx) or fill (tx)
	// vnet: each slot's frame is preceded by a virtio_net_hdr. On receive
	// it carries a super-frame's offload metadata (LiveOptions.Offloads).
	// On transmit an ordinary frame's header has hdr_len the whole frame,
	// so the kernel copies the frame into the skb's linear part instead of
	// linking the ring's page as a fragment (which veth and any local
	// delivery then copy into a freshly allocated page, since the slot is
	// reused once the skb is orphaned); a super-frame's carries its own.
	vnet bool
	// big (receive, offloads): a frame too large for a slot arrives cut
	// to the slot with TP_STATUS_COPY, and whole on the socket's queue
	// (PACKET_COPY_THRESH); it is read from fd into big.
	big []byte
	fd  int
}

// bigFrame is the buffer for a frame read whole off the socket queue: a
// virtio_net_hdr and an IP packet of up to 64 KB with its link header and
// tags.
const bigFrame = vnetHdrLen + 14 + 8 + 65535

// geometry returns a ring request for at least frames slots of fsz bytes in
// 64 KB blocks (a multiple of any page size Linux uses; fsz is a multiple
// of 16 and, when above 64 KB, of the page size).
func geometry(fsz, frames int) unix.TpacketReq {
	block := max(fsz, 1<<16)
	perBlock := block / fsz
	blocks := max(1, (frames+perBlock-1)/perBlock)
	return unix.TpacketReq{
		Block_size: uint32(block), Block_nr: uint32(blocks),
		Frame_size: uint32(fsz), Frame_nr: uint32(blocks * perBlock),
	}
}

func mapRing(fd, opt int, req unix.TpacketReq) (ring, error) {
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, opt, &req); err != nil {
		return ring{}, err
	}
	mem, err := unix.Mmap(fd, 0, int(req.Block_size*req.Block_nr), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return ring{}, err
	}
	return ring{mem: mem, fsz: int(req.Frame_size), bsz: int(req.Block_size), perBlock: int(req.Block_size / req.Frame_size), n: int(req.Frame_nr)}, nil
}

func (r *ring) unmap() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
}

// off is where slot i starts.
func (r *ring) off(i int) int { return i/r.perBlock*r.bsz + i%r.perBlock*r.fsz }

// hdr is the slot header at index i.
func (r *ring) hdr(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.mem[r.off(i)]))
}

// htons converts a protocol number to network order for sockaddr_ll.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// openRing opens an AF_PACKET socket with a TPACKET_V2 ring of kind opt
// (PACKET_RX_RING or PACKET_TX_RING): setup sets the socket's options that
// must precede the ring, then the socket is bound to proto (network order)
// on ifindex. what names the socket in errors.
func openRing(what string, ifindex int, proto uint16, opt, fsz, frames int, setup func(fd int) error) (int, ring, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, ring{}, fmt.Errorf("%s: %w", what, err)
	}
	r := ring{}
	err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2)
	if err == nil {
		err = setup(fd)
	}
	if err == nil {
		r, err = mapRing(fd, opt, geometry(fsz, frames))
	}
	if err == nil {
		if err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
			r.unmap()
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, ring{}, fmt.Errorf("%s: %w", what, err)
	}
	return fd, r, nil
}

// openReader opens the receive socket: TPACKET_V2 ring, the outgoing-frame
// filter (if any) attached before the socket is bound, so no unfiltered
// frame ever lands in the ring, then bound to every protocol on ifindex.
func openReader(ifindex, fsz, frames int, prog []unix.SockFilter, vnet bool) (int, ring, error) {
	fd, r, err := openRing("receive socket", ifindex, htons(unix.ETH_P_ALL), unix.PACKET_RX_RING, fsz, frames, func(fd int) error {
		if vnet {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return fmt.Errorf("%w: virtio_net_hdr: %w", ErrUnsupported, err)
			}
			// Super-frames: cut in the ring, whole on the queue.
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1); err != nil {
				return fmt.Errorf("%w: copy_thresh: %w", ErrUnsupported, err)
			}
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, superQueue) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, superQueue)
			}
		}
		if prog == nil {
			return nil
		}
		fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
			return fmt.Errorf("filter outgoing frames: %w", err)
		}
		return nil
	})
	r.vnet = vnet
	if vnet && err == nil {
		r.big, r.fd = make([]byte, bigFrame), fd
	}
	return fd, r, err
}

// superQueue is the receive buffer for super-frames waiting whole on the
// socket queue (kernel memory, taken only while they wait): 64 of them.
const superQueue = 64 * (64 << 10) // 4 MB

// openSender opens a send-only socket without a ring, for super-frames too
// large for a transmit slot: bound like the ring's, virtio_net_hdr first
// in every write. Unlike the ring's, it goes through the queueing
// discipline: bypassing it, the kernel drops a super-frame it would have
// to segment (__dev_direct_xmit refuses what validate_xmit_skb replaces),
// which is every super-frame a port with TSO off sends (on veth, with no
// qdisc, the path is the same otherwise).
func openSender(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("super-frame socket: %w", err)
	}
	if err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex})
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("super-frame socket: %w", err)
	}
	return fd, nil
}

// openTxRing opens the send socket with a TPACKET_V2 transmit ring: bound
// to the interface with protocol 0, so it receives nothing; qdisc bypassed,
// so a forwarded frame goes straight to the driver as an IPS's does (the
// queueing discipline belongs to traffic the host originates; best effort:
// kernels without it send through the qdisc); virtio_net_hdr slots (see
// ring.vnet; best effort too); PACKET_LOSS set so a frame the kernel
// refuses is skipped instead of stopping the ring (frames are checked
// before they are queued, so that is a safety net).
func openTxRing(ifindex, fsz, frames int) (int, ring, error) {
	vnet := false
	fd, r, err := openRing("send socket", ifindex, 0, unix.PACKET_TX_RING, fsz, frames, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1); err != nil {
			return fmt.Errorf("packet_loss: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		vnet = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) == nil
		return nil
	})
	r.vnet = vnet
	return fd, r, err
}

// rxPeek returns the frame in the current receive slot in place, with a
// VLAN tag the kernel stripped restored in the slot's headroom (the bytes
// between the slot header and the frame, which the caller owns until
// rxRelease), and its offload metadata when the ring carries it. A frame
// larger than the slot (a super-frame) is read whole off the socket queue
// into the ring's big buffer instead. ok is false when the slot holds no
// frame yet.
func (r *ring) rxPeek() (frame []byte, info Info, ok bool) {
	h := r.hdr(r.head)
	st := atomic.LoadUint32(&h.Status)
	if st&unix.TP_STATUS_USER == 0 {
		return nil, Info{}, false
	}
	mem := r.mem
	off := r.off(r.head)
	start := off + int(h.Mac)
	end := start + int(min(int(h.Snaplen), r.fsz-int(h.Mac)))
	var g OffloadInfo
	hasVnet := r.vnet && int(h.Mac) >= tp2HdrLen+vnetHdrLen
	if hasVnet {
		g = readVnet(mem[start-vnetHdrLen : start])
	}
	headroom := int(h.Mac) - tp2HdrLen
	if st&unix.TP_STATUS_COPY != 0 && r.big != nil {
		if n, ok := r.readWhole(mem[start:end], int(h.Len)); ok {
			mem, start, end, headroom = r.big, vnetHdrLen, n, vnetHdrLen
			g = readVnet(r.big[:vnetHdrLen])
		}
	}
	length := int(h.Len)
	if (st&unix.TP_STATUS_VLAN_VALID != 0 || h.Vlan_tci != 0) && end-start >= 12 && headroom >= 4 {
		tpid := uint16(unix.ETH_P_8021Q)
		if st&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Vlan_tpid != 0 {
			tpid = h.Vlan_tpid
		}
		copy(mem[start-4:start+8], mem[start:start+12])
		start -= 4
		binary.BigEndian.PutUint16(mem[start+12:], tpid)
		binary.BigEndian.PutUint16(mem[start+14:], h.Vlan_tci)
		length += 4
		if g.HdrLen != 0 {
			g.HdrLen += 4
		}
		if g.Flags&GSONeedsCsum != 0 {
			g.CsumStart += 4
		}
	}
	frame = mem[start:end:end]
	if !hasVnet && st&unix.TP_STATUS_CSUMNOTREADY != 0 {
		// No virtio_net_hdr (a kernel before 5.8): the status still says
		// the checksum is partial; where it lies is found in the headers.
		g, _ = partialChecksum(frame)
	}
	return frame, Info{Timestamp: time.Unix(int64(h.Sec), int64(h.Nsec)), CaptureLength: len(frame), Length: max(length, len(frame)), GSO: g}, true
}

// readWhole reads the whole of a frame the ring holds cut (head, its
// first bytes; length, its size) off the socket queue into big, behind its
// virtio_net_hdr, and returns where it ends. A frame that cannot be read,
// or is not the one the slot holds, is not returned: the caller keeps the
// cut copy, which a bridge drops and counts as truncated.
func (r *ring) readWhole(head []byte, length int) (int, bool) {
	h := head[:min(len(head), 64)]
	// The queue holds the ring's cut frames in ring order, so the first is
	// the one; a stale one before it (never seen) is passed over, and an
	// empty queue is not waited on.
	for range 4 {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&r.big[0])), uintptr(len(r.big)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, false
		case int(n) == vnetHdrLen+length && bytes.Equal(r.big[vnetHdrLen:vnetHdrLen+len(h)], h):
			return int(n), true
		}
	}
	return 0, false
}

// writeVnet encodes the virtio_net_hdr to send a frame of n bytes with g.
func writeVnet(v []byte, g OffloadInfo, n int) {
	// An ordinary frame's hdr_len is the whole frame, so it is copied (see
	// vnet); a super-frame's is its headers, as received.
	hdrLen := uint16(min(n, 0xffff))
	if g.Type&^GSOECN != GSONone {
		hdrLen = min(g.HdrLen, hdrLen)
	}
	// The receive side's "checksum verified" means nothing to the kernel
	// on transmit.
	v[0], v[1] = g.Flags&GSONeedsCsum, g.Type
	binary.NativeEndian.PutUint16(v[2:], hdrLen)
	binary.NativeEndian.PutUint16(v[4:], g.Size)
	binary.NativeEndian.PutUint16(v[6:], g.CsumStart)
	binary.NativeEndian.PutUint16(v[8:], g.CsumOffset)
}

// readVnet decodes a virtio_net_hdr (native byte order, as the kernel
// writes it for packet sockets).
func readVnet(v []byte) OffloadInfo {
	return OffloadInfo{
		Flags: v[0], Type: v[1],
		HdrLen:     binary.NativeEndian.Uint16(v[2:]),
		Size:       binary.NativeEndian.Uint16(v[4:]),
		CsumStart:  binary.NativeEndian.Uint16(v[6:]),
		CsumOffset: binary.NativeEndian.Uint16(v[8:]),
	}
}

// rxRelease gives the current receive slot back to the kernel.
func (r *ring) rxRelease() {
	atomic.StoreUint32(&r.hdr(r.head).Status, unix.TP_STATUS_KERNEL)
	r.head++
	if r.head == r.n {
		r.head = 0
	}
}

// rxReady reports whether the current receive slot holds a frame.
func (r *ring) rxReady() bool {
	return atomic.LoadUint32(&r.hdr(r.head).Status)&unix.TP_STATUS_USER != 0
}

// txRoom is the largest frame a transmit slot holds.
func (r *ring) txRoom() int {
	if r.vnet {
		return r.fsz - tp2HdrLen - vnetHdrLen
	}
	return r.fsz - tp2HdrLen
}

// txSent reports whether the kernel has taken the slot filled last (and
// so, in ring order, every one before it).
func (r *ring) txSent() bool {
	last := r.head - 1
	if last < 0 {
		last = r.n - 1
	}
	return atomic.LoadUint32(&r.hdr(last).Status) != unix.TP_STATUS_SEND_REQUEST
}

// txState describes the transmit ring for an ErrTxBusy: how many slots
// wait to be sent, are being sent (the driver holds the frame) or are
// free, and the state of the slot to fill next, so a ring the kernel
// stopped taking can be told from a driver that is only slow.
func (r *ring) txState() string {
	var waiting, sending, free, other int
	for i := range r.n {
		switch atomic.LoadUint32(&r.hdr(i).Status) {
		case unix.TP_STATUS_SEND_REQUEST:
			waiting++
		case unix.TP_STATUS_SENDING:
			sending++
		case unix.TP_STATUS_AVAILABLE:
			free++
		default:
			other++
		}
	}
	return fmt.Sprintf("%d slots: %d waiting, %d sending, %d free, %d other; next %d status %#x",
		r.n, waiting, sending, free, other, r.head, atomic.LoadUint32(&r.hdr(r.head).Status))
}

// txOldest is the oldest slot waiting to be sent, where the kernel's own
// head stands (it takes slots in ring order and stops at the first that
// does not wait), or -1 when none waits.
func (r *ring) txOldest() int {
	i, k := r.head, 0
	for k < r.n {
		j := i - 1
		if j < 0 {
			j = r.n - 1
		}
		if atomic.LoadUint32(&r.hdr(j).Status) != unix.TP_STATUS_SEND_REQUEST {
			break
		}
		i, k = j, k+1
	}
	if k == 0 {
		return -1
	}
	return i
}

// txDropOldest removes the oldest waiting frame: the ones behind it move
// up a slot each, keeping their order, so the kernel finds the next one
// where its head stands. Only while no send is in progress (under wmu).
func (r *ring) txDropOldest() bool {
	i := r.txOldest()
	if i < 0 {
		return false
	}
	last := r.head - 1
	if last < 0 {
		last = r.n - 1
	}
	for i != last {
		j := i + 1
		if j == r.n {
			j = 0
		}
		from, to := r.hdr(j), r.hdr(i)
		src := r.off(j) + tp2HdrLen
		copy(r.mem[r.off(i)+tp2HdrLen:], r.mem[src:src+int(from.Len)])
		to.Len = from.Len
		i = j
	}
	atomic.StoreUint32(&r.hdr(last).Status, unix.TP_STATUS_AVAILABLE)
	r.head = last
	return true
}

// txFree reports whether the slot to fill next is free.
func (r *ring) txFree() bool {
	return atomic.LoadUint32(&r.hdr(r.head).Status) == unix.TP_STATUS_AVAILABLE
}

// txPut fills the current (free) transmit slot with frame and hands it to
// the kernel; it goes out at the next kick. g is the frame's offload
// metadata (zero for an ordinary frame); the ring must be vnet for any.
// With fill, g is a partial checksum to complete in the slot instead
// (CompleteChecksum), and the frame goes out without metadata; txPut
// reports false, leaving the slot unused, when g does not fit the frame.
func (r *ring) txPut(frame []byte, g OffloadInfo, fill bool) bool {
	h := r.hdr(r.head)
	off := r.off(r.head) + tp2HdrLen
	n := len(frame)
	send := g
	if fill {
		send = OffloadInfo{}
	}
	if r.vnet {
		writeVnet(r.mem[off:off+vnetHdrLen], send, n)
		off += vnetHdrLen
		n += vnetHdrLen
	}
	copy(r.mem[off:off+len(frame)], frame)
	if fill && !CompleteChecksum(r.mem[off:off+len(frame)], g) {
		return false
	}
	h.Len = uint32(n)
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
	r.head++
	if r.head == r.n {
		r.head = 0
	}
	return true
}

// pollFd waits up to timeout for events on fd; it reports whether they came.
func pollFd(fd int, events int16, timeout time.Duration) (bool, error) {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(pfd[:], int(timeout/time.Millisecond))
	if err == unix.EINTR {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n > 0 && pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("poll: revents %#x", pfd[0].Revents)
	}
	return n > 0, nil
}
