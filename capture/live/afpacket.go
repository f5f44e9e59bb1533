//go:build linux

package live

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/capture"
)

// AFPacket is one AF_PACKET socket with a TPACKET_V3 ring, one of the
// workers that OpenAFPacket joins in a fanout group.
//
// One goroutine reads it. Close may be called from any goroutine, also
// while that goroutine is blocked in ReadFrame: the read then returns
// io.EOF within about 100 ms. A frame's Data points into the ring and is
// valid until the next ReadFrame or until Close returns; Close waits for a
// reader still using its last frame to ask for the next one (at most a
// second) before it unmaps the ring. Stats may be called from any
// goroutine, before and after Close.
//
// The kernel takes the outer VLAN tag off a frame before AF_PACKET sees
// it, and the filter runs on what is left: "udp port 7" matches frames
// with one tag as well, and "vlan" does not see that tag. The tag is put
// back into Data (a copy of the frame, as the ring has no room for it), so
// the decoder sees the frame as it was on the wire.
type AFPacket struct {
	iface string
	lease *lease
	tp    *tpacket // closed by the lease's release
	stats kernelStats
}

var (
	_ capture.Source      = (*AFPacket)(nil)
	_ capture.StatsSource = (*AFPacket)(nil)
)

// Hardware types (ARPHRD_*) of the interfaces whose frames start with an
// Ethernet header.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// OpenAFPacket opens workers AF_PACKET sockets on cfg.Interface, joined in
// one fanout group that hashes each flow, both its directions, to one
// socket. Each socket has a ring of cfg.BufferSize bytes. Open it once per
// interface in a process: a second call would join the same group.
//
// Promiscuous mode is a PACKET_MR_PROMISC membership of each socket, which
// the kernel drops when the socket closes, even if the process dies.
func OpenAFPacket(cfg Config, workers int) ([]*AFPacket, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if workers < 1 {
		return nil, fmt.Errorf("capture/live: %s: %d workers: need at least one", cfg.Interface, workers)
	}
	// The program's return value, the snap length, is what cuts frames:
	// with TPACKET_V3 the ring's frame size does not.
	filter, err := compileBPF(layers.LinkTypeEthernet, cfg.Snaplen, cfg.BPF)
	if err != nil {
		return nil, bpfError(cfg.Interface, cfg.BPF, err)
	}
	if err := checkEthernet(cfg.Interface); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		// Its sockets would open, and fail their first read.
		return nil, fmt.Errorf("capture/live: %s: interface is down", cfg.Interface)
	}
	r := ringFor(cfg.Snaplen, cfg.BufferSize)
	group := fanoutGroup(ifi.Index)
	srcs := make([]*AFPacket, 0, workers)
	for range workers {
		a, err := openSocket(cfg, ifi.Index, r, group, filter)
		if err != nil {
			for _, s := range srcs {
				s.Close()
			}
			return nil, err
		}
		srcs = append(srcs, a)
	}
	return srcs, nil
}

// checkEthernet refuses interfaces whose frames are not Ethernet (tun
// devices, tunnels): the filter is compiled for Ethernet and the frames
// are labelled so.
func checkEthernet(iface string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("capture/live: %s: hardware type: %w", iface, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		// The name is too long to be an interface's (IFNAMSIZ).
		return fmt.Errorf("capture/live: %s: %w", iface, ErrNoDevice)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("capture/live: %s: %w", iface, ErrNoDevice)
		}
		return fmt.Errorf("capture/live: %s: hardware type: %w", iface, err)
	}
	// The union starts with the hardware address's sa_family: ARPHRD_*.
	switch t := ifr.Uint16(); t {
	case arphrdEther, arphrdLoopback:
		return nil
	default:
		return fmt.Errorf("capture/live: %s: afpacket captures Ethernet interfaces only (hardware type %d); use pcap", iface, t)
	}
}

// ring is the geometry of a TPACKET_V3 ring.
type ring struct {
	frameSize, blockSize, numBlocks int
}

// ringFor sizes a ring of about bufferSize bytes in 1 MiB blocks. A V3
// block holds many frames of any length up to the block's size, so the
// block must exceed the snap length; the frame size only has to divide
// it, and is the snap length plus room for the headers the kernel puts
// before each frame.
func ringFor(snaplen, bufferSize int) ring {
	const headroom = 256 // tpacket3_hdr, sockaddr_ll, alignment
	frame := 1 << bits.Len(uint(snaplen+headroom-1))
	block := max(frame, 1<<20)
	return ring{frameSize: frame, blockSize: block, numBlocks: max(bufferSize/block, 2)}
}

// fanoutGroup derives the fanout group id from the pid, so that two
// sensors on one interface are unlikely to share a group (it would split
// the traffic between them), and from the interface, so that one sensor
// can capture several interfaces (a group belongs to one interface).
func fanoutGroup(ifindex int) uint16 {
	return uint16(os.Getpid()) ^ uint16(ifindex)
}

// openSocket opens one worker. A socket outside the fanout group would
// receive every frame that passes its filter, so it binds with a filter
// that rejects everything, joins the group, and only then takes the real
// filter: no frame reaches the reader unfiltered or twice.
func openSocket(cfg Config, ifindex int, r ring, group uint16, filter []bpf.RawInstruction) (*AFPacket, error) {
	rejectAll := []bpf.RawInstruction{{Op: unix.BPF_RET | unix.BPF_K, K: 0}}
	tp, err := openTPacket(ifindex, r, readTimeout, rejectAll)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, ErrPermission)
		}
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, ErrNoDevice)
		}
		return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"join fanout group", func() error { return tp.setFanout(unix.PACKET_FANOUT_HASH|unix.PACKET_FANOUT_FLAG_DEFRAG, group) }},
		{"set promiscuous mode", func() error {
			if !cfg.Promisc {
				return nil
			}
			return tp.setPromisc(ifindex)
		}},
		// Counters start with the real filter: nothing passed reject-all.
		{"reset counters", tp.resetStats},
		{"attach filter", func() error { return tp.setFilter(filter) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			tp.close(false)
			return nil, fmt.Errorf("capture/live: %s: %s: %w", cfg.Interface, s.what, err)
		}
	}
	a := &AFPacket{iface: cfg.Interface, tp: tp}
	a.stats = kernelStats{iface: cfg.Interface, read: func() ([4]uint32, error) {
		st, err := tp.stats()
		return [4]uint32{st[0], st[1], 0, st[2]}, err
	}}
	a.lease = newLease(a.release)
	return a, nil
}

// ReadFrame fills f with the next frame. It returns capture.ErrTimeout when
// no frame came within the read timeout (100 ms), and io.EOF once Close has
// been called.
//
// While the block the reader holds has frames left, a read costs no system
// call and no compare-and-swap: the lease stays lent from the read that
// got the block, and a Close is noticed by its flag alone. Only a read
// that waits for the ring goes through the lease.
func (a *AFPacket) ReadFrame(f *capture.Frame) error {
	if a.tp.more() && !a.lease.stopping() {
		return a.frame(f)
	}
	if !a.lease.begin() {
		return io.EOF
	}
	err := a.tp.wait()
	if err == nil {
		// The frame is read while the read holds the lease.
		err := a.frame(f)
		if !a.lease.end(true) {
			return io.EOF
		}
		return err
	}
	if errors.Is(err, errRingTimeout) && !a.lease.stopping() {
		// Give the caller its chance to flush and to notice a stop.
		if !a.lease.end(false) {
			return io.EOF
		}
		return capture.ErrTimeout
	}
	// A timeout here means Close was called, and end releases.
	if !a.lease.end(false) {
		return io.EOF
	}
	return fmt.Errorf("capture/live: %s: read: %w", a.iface, err)
}

// frame fills f with the next frame of the block the reader holds.
func (a *AFPacket) frame(f *capture.Frame) error {
	if err := a.tp.frame(f); err != nil {
		if a.lease.stopping() {
			return io.EOF // a ring closed under a reader that came back late
		}
		return fmt.Errorf("capture/live: %s: read: %w", a.iface, err)
	}
	return nil
}

// Close stops the capture and releases the socket, as the AFPacket doc
// describes. It is safe to call more than once.
func (a *AFPacket) Close() error {
	a.lease.close()
	return nil
}

// release closes the socket, keeping its last counters for Stats. When
// Close gave up waiting for the reader, the ring's memory stays readable,
// as zeros.
func (a *AFPacket) release() {
	a.stats.release(func() { a.tp.close(a.lease.lapsed()) })
}

// Stats returns the socket's counters: frames that passed the filter
// (including those dropped), frames dropped because the ring was full,
// and how often the ring froze for want of a free block. After Close it
// returns the last counters. The kernel's counters are 32 bits wide: read
// them at least once per 4 billion frames.
func (a *AFPacket) Stats() (capture.SourceStats, error) {
	return a.stats.get()
}
