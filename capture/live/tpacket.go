//go:build linux

package live

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/capture"
)

// The TPACKET_V3 layout (linux/if_packet.h). A block starts with a
// tpacket_block_desc whose tpacket_hdr_v1 says whose the block is, how
// many frames it holds and where the first one starts; each frame starts
// with a tpacket3_hdr, followed at a 16-byte boundary by the sockaddr_ll
// of the interface it came from, and its bytes at tp_mac.
const (
	blockStatus     = 8  // tpacket_hdr_v1.block_status
	blockNumPkts    = 12 // tpacket_hdr_v1.num_pkts
	blockFirstPkt   = 16 // tpacket_hdr_v1.offset_to_first_pkt
	blockDescSize   = 48 // up to the end of tpacket_hdr_v1
	frameNextOffset = 0  // tpacket3_hdr.tp_next_offset
	frameSec        = 4
	frameNsec       = 8
	frameSnaplen    = 12
	frameLen        = 16
	frameStatus     = 20
	frameMac        = 24 // uint16
	frameVLANTCI    = 32 // hv1.tp_vlan_tci
	frameVLANTPID   = 36 // hv1.tp_vlan_tpid, uint16
	frameIfindex    = 48 + 4
	frameHdrSize    = 48 + 8 // tpacket3_hdr and sockaddr_ll up to sll_ifindex
)

// errRingTimeout is a wait for the next block that timed out.
var errRingTimeout = errors.New("no frame within the poll timeout")

// tpacket is an AF_PACKET socket with its TPACKET_V3 receive ring mapped,
// read by one goroutine. It hands out the frames of one block at a time,
// straight from the ring, and gives the block back to the kernel when the
// reader asks for the frame after its last one.
//
// The kernel is the only writer of the ring, yet the reader checks every
// offset it follows against the block's end, so a layout it does not
// expect is an error, not a read outside the mapping.
type tpacket struct {
	fd   int
	mem  []byte // the ring: geo.numBlocks blocks of geo.blockSize bytes
	geo  ring
	poll time.Duration

	block int  // the block being read, or the next one to wait for
	held  bool // block is the reader's: the kernel handed it over
	left  uint32
	next  int // offset in mem of the next frame's header
	end   int // offset in mem of the held block's end

	tagged []byte // a frame with its VLAN tag put back, when it has one

	// counted adds up PACKET_STATISTICS, which the kernel clears at each
	// read: received, dropped, ring freezes, wrapping as the kernel's do.
	counted [3]uint32
}

// openTPacket opens an AF_PACKET socket that receives nothing until it is
// bound, gives it a TPACKET_V3 ring of geometry r and the filter, and
// binds it to the interface with index ifindex. Attaching the filter
// before binding means no frame is ever received unfiltered.
func openTPacket(ifindex int, r ring, poll time.Duration, filter []bpf.RawInstruction) (*tpacket, error) {
	// Protocol 0: no frame is queued before bind names ETH_P_ALL.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open socket: %w", err)
	}
	t := &tpacket{fd: fd, geo: r, poll: poll}
	if err := t.setup(ifindex, filter); err != nil {
		t.close(false)
		return nil, err
	}
	return t, nil
}

func (t *tpacket) setup(ifindex int, filter []bpf.RawInstruction) error {
	if err := unix.SetsockoptInt(t.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size: uint32(t.geo.blockSize),
		Block_nr:   uint32(t.geo.numBlocks),
		Frame_size: uint32(t.geo.frameSize),
		Frame_nr:   uint32(t.geo.blockSize / t.geo.frameSize * t.geo.numBlocks),
		// The kernel retires a partly filled block at the second expiry
		// of this timer that finds it current: 50 to 100 ms after it
		// opened, so a frame waits at most about one read timeout.
		Retire_blk_tov: uint32(t.poll / 2 / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(t.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("receive ring of %d blocks of %d bytes: %w", t.geo.numBlocks, t.geo.blockSize, err)
	}
	mem, err := unix.Mmap(t.fd, 0, t.geo.numBlocks*t.geo.blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the receive ring: %w", err)
	}
	t.mem = mem
	if err := t.setFilter(filter); err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(t.fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// htons returns v in network byte order, as the kernel reads a socket
// address's protocol: its big-endian bytes, read in the machine's order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// setFilter attaches a classic BPF program.
func (t *tpacket) setFilter(filter []bpf.RawInstruction) error {
	if len(filter) == 0 || len(filter) > 0xffff {
		return fmt.Errorf("a program of %d instructions", len(filter))
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: (*unix.SockFilter)(unsafe.Pointer(&filter[0]))}
	return unix.SetsockoptSockFprog(t.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

// setFanout joins the fanout group of the interface's sockets.
func (t *tpacket) setFanout(kind int, group uint16) error {
	return unix.SetsockoptInt(t.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, kind<<16|int(group))
}

// setPromisc adds a promiscuous membership, which the kernel drops when
// the socket closes.
func (t *tpacket) setPromisc(ifindex int) error {
	mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
	return unix.SetsockoptPacketMreq(t.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq)
}

// resetStats reads the kernel's counters, which clears them, and starts
// the sums afresh.
func (t *tpacket) resetStats() error {
	_, err := t.stats()
	t.counted = [3]uint32{}
	return err
}

// stats reads the kernel's counters and returns their sums since the
// socket opened: received (drops included), dropped, ring freezes.
func (t *tpacket) stats() ([3]uint32, error) {
	st, err := unix.GetsockoptTpacketStatsV3(t.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return t.counted, err
	}
	t.counted[0] += st.Packets
	t.counted[1] += st.Drops
	t.counted[2] += st.Freeze_q_cnt
	return t.counted, nil
}

// close closes the socket and unmaps the ring. With keepReadable, the
// reader might still hold a frame (its loan lapsed, see lease.lapsed): the
// ring's pages are replaced by zeros instead, which read as a block with
// nothing in it, and the address range stays reserved, at no memory cost,
// for the life of the process.
func (t *tpacket) close(keepReadable bool) {
	if t.mem != nil {
		if !keepReadable {
			unix.Munmap(t.mem)
			t.mem = nil
		} else if _, err := unix.MmapPtr(-1, 0, unsafe.Pointer(&t.mem[0]), uintptr(len(t.mem)),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err != nil {
			unix.Munmap(t.mem) // cannot happen short of exhausted memory maps
		}
	}
	if t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// status is the word of the block at off that says whose it is, read
// and written atomically: the kernel writes the frames before it hands
// the block over, and must not see it handed back before we are done.
func (t *tpacket) status(off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&t.mem[off+blockStatus]))
}

// more reports whether a frame of the held block is left to read.
func (t *tpacket) more() bool { return t.left > 0 }

// wait gives the held block back to the kernel, if there is one, and
// waits up to the poll timeout for the next block with frames. It returns
// errRingTimeout when none came.
func (t *tpacket) wait() error {
	var deadline time.Time // set at the first poll: most waits need none
	for {
		if t.held {
			atomic.StoreUint32(t.status(t.block*t.geo.blockSize), unix.TP_STATUS_KERNEL)
			t.held = false
			t.block = (t.block + 1) % t.geo.numBlocks
		}
		off := t.block * t.geo.blockSize
		if atomic.LoadUint32(t.status(off))&unix.TP_STATUS_USER == 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(t.poll)
			}
			if err := t.pollIn(time.Until(deadline)); err != nil {
				return err
			}
			continue
		}
		t.held = true
		b := t.mem[off : off+t.geo.blockSize]
		n := binary.NativeEndian.Uint32(b[blockNumPkts:])
		first := int(binary.NativeEndian.Uint32(b[blockFirstPkt:]))
		if n == 0 { // retired by the timer with nothing in it
			continue
		}
		if first < blockDescSize || first > t.geo.blockSize-frameHdrSize {
			return fmt.Errorf("ring block %d: first frame at %d of %d bytes", t.block, first, t.geo.blockSize)
		}
		t.left, t.next, t.end = n, off+first, off+t.geo.blockSize
		return nil
	}
}

// pollIn waits until the kernel hands a block over, or for d (a wait
// interrupted by a signal, or woken for nothing, goes on with what is left
// of the read's timeout).
func (t *tpacket) pollIn(d time.Duration) error {
	if d <= 0 {
		return errRingTimeout
	}
	fds := [1]unix.PollFd{{Fd: int32(t.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], int((d+time.Millisecond-1)/time.Millisecond))
	switch {
	case errors.Is(err, unix.EINTR):
		return nil
	case err != nil:
		return fmt.Errorf("poll: %w", err)
	case n == 0:
		return errRingTimeout
	case fds[0].Revents&unix.POLLERR != 0:
		// The socket's error says why: the interface went down or away.
		if e, err := unix.GetsockoptInt(t.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			return unix.Errno(e)
		}
		return errors.New("error on the socket (is the interface down or gone?)")
	case fds[0].Revents&unix.POLLNVAL != 0:
		return errors.New("socket closed under the reader")
	}
	return nil
}

// frame fills f with the next frame of the held block (more must be
// true): its bytes, borrowed until the next wait, with the VLAN tag the
// kernel took off put back; its length on the wire, tag included; its
// time; and its interface.
func (t *tpacket) frame(f *capture.Frame) error {
	at := t.next
	if at > t.end-frameHdrSize {
		t.left = 0 // the next read moves on to the next block
		return fmt.Errorf("ring block %d: frame header at %d past the block", t.block, at-t.end+t.geo.blockSize)
	}
	h := t.mem[at : at+frameHdrSize]
	// Compared unsigned, as they come: on a 32-bit machine a large one
	// would turn negative as an int.
	snap32 := binary.NativeEndian.Uint32(h[frameSnaplen:])
	mac, room := int(binary.NativeEndian.Uint16(h[frameMac:])), t.end-at
	if mac < frameHdrSize || mac > room || uint64(snap32) > uint64(room-mac) {
		t.left = 0
		return fmt.Errorf("ring block %d: frame of %d bytes at %d past the block", t.block, snap32, at+mac-t.end+t.geo.blockSize)
	}
	snap := int(snap32)
	t.left--
	// The kernel sets every frame's next offset but the last's, which is
	// 0; were one 0 before it, the next frame is where the kernel would
	// have put it, at the next 8-byte boundary.
	next := uint64(binary.NativeEndian.Uint32(h[frameNextOffset:]))
	if next == 0 {
		next = uint64(mac+snap+7) &^ 7
	}
	t.next = at + int(min(next, uint64(room))) // past the end: the next frame() says so
	data := t.mem[at+mac : at+mac+snap : at+mac+snap]
	length := int(binary.NativeEndian.Uint32(h[frameLen:]))
	if status := binary.NativeEndian.Uint32(h[frameStatus:]); status&unix.TP_STATUS_VLAN_VALID != 0 && len(data) >= 12 {
		tpid := uint16(unix.ETH_P_8021Q)
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = binary.NativeEndian.Uint16(h[frameVLANTPID:])
		}
		data = t.tag(data, tpid, uint16(binary.NativeEndian.Uint32(h[frameVLANTCI:])))
		length += 4
	}
	*f = capture.Frame{
		Data:          data,
		Timestamp:     time.Unix(int64(binary.NativeEndian.Uint32(h[frameSec:])), int64(binary.NativeEndian.Uint32(h[frameNsec:]))).UTC(),
		CaptureLength: len(data),
		Length:        length,
		LinkType:      layers.LinkTypeEthernet,
		Interface:     int(int32(binary.NativeEndian.Uint32(h[frameIfindex:]))),
	}
	return nil
}

// tag returns data with an 802.1Q or 802.1ad tag put back behind its two
// MAC addresses, in a buffer of the tpacket's.
func (t *tpacket) tag(data []byte, tpid, tci uint16) []byte {
	n := len(data) + 4
	if cap(t.tagged) < n {
		t.tagged = make([]byte, max(n, 2048))
	}
	b := t.tagged[:n]
	copy(b, data[:12])
	binary.BigEndian.PutUint16(b[12:], tpid)
	binary.BigEndian.PutUint16(b[14:], tci)
	copy(b[16:], data[12:])
	return b
}
