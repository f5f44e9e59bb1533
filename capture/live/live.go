// Package live captures frames from network interfaces, through libpcap on
// every platform (Pcap) and through TPACKET_V3 rings with fanout on Linux
// (AFPacket), and compiles tcpdump-style filters for files (BPFFilter).
//
// It is the only package of echowatch that uses cgo: libpcap compiles every
// BPF expression, and captures through it when asked to.
package live

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Defaults for the zero values of Config.
const (
	// DefaultSnaplen is libpcap's largest snap length: whole frames,
	// including the large segments that offloads hand to the capture.
	DefaultSnaplen = capture.MaxSnaplen
	// DefaultBufferSize is the kernel buffer per capture socket: about a
	// quarter of a second of a saturated 1 Gb/s link.
	DefaultBufferSize = 32 << 20
)

// readTimeout bounds how long a read waits in the kernel before it looks
// for a Close from another goroutine, so it bounds how long Close takes.
const readTimeout = 100 * time.Millisecond

// Config says what to capture and how.
type Config struct {
	// Interface is the name of the interface to capture on. Pcap also
	// accepts libpcap's pseudo-devices such as "any".
	Interface string
	// Snaplen is the most bytes kept of each frame (DefaultSnaplen if 0).
	Snaplen int
	// Promisc puts the interface in promiscuous mode for as long as the
	// capture is open, so that frames for other hosts (a span port's
	// traffic) are captured too.
	Promisc bool
	// BPF is a tcpdump-style filter expression, run in the kernel; empty
	// captures everything.
	BPF string
	// BufferSize is the kernel buffer of each capture socket in bytes
	// (DefaultBufferSize if 0).
	BufferSize int
}

// withDefaults validates c and fills its zero values.
func (c Config) withDefaults() (Config, error) {
	if c.Interface == "" {
		return c, errors.New("capture/live: no interface given")
	}
	if c.Snaplen < 0 || c.Snaplen > DefaultSnaplen {
		return c, fmt.Errorf("capture/live: %s: snap length %d is not in 1..%d", c.Interface, c.Snaplen, DefaultSnaplen)
	}
	if c.Snaplen == 0 {
		c.Snaplen = DefaultSnaplen
	}
	if c.BufferSize < 0 {
		return c, fmt.Errorf("capture/live: %s: buffer size %d is negative", c.Interface, c.BufferSize)
	}
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	return c, nil
}

// ErrNoDevice is wrapped by the error for an interface that does not exist,
// whichever layer noticed it first.
var ErrNoDevice = errors.New("no such device")

// ErrPermission is wrapped by the error for a capture the sensor may not
// open, in either capture mode.
var ErrPermission = errors.New("permission denied (capture needs root or CAP_NET_RAW)")

// kernelStats keeps a capture's kernel counters for its Stats, which any
// goroutine may call: widened from the kernel's 32 bits to 64 while the
// capture is open (it sees every wrap if read at least once per wrap),
// and the last ones read once the capture is released.
type kernelStats struct {
	iface string
	// read returns the capture's counters: received, dropped, dropped by
	// the interface, ring freezes. Called with mu held; nil once released.
	read func() ([4]uint32, error)

	mu    sync.Mutex
	last  [4]uint32
	total [4]uint64
}

// get returns the counters.
func (k *kernelStats) get() (capture.SourceStats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.read == nil {
		return k.sourceStats(), nil
	}
	return k.update()
}

// release reads the counters a last time, then runs free, which closes the
// capture, holding mu so that no get reads the capture as it closes.
func (k *kernelStats) release(free func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.update() // on failure, the counters read before stand
	k.read = nil
	free()
}

// update reads the counters and widens them; mu is held.
func (k *kernelStats) update() (capture.SourceStats, error) {
	v, err := k.read()
	if err != nil {
		return capture.SourceStats{}, fmt.Errorf("capture/live: %s: stats: %w", k.iface, err)
	}
	for i := range v {
		k.total[i] += uint64(v[i] - k.last[i])
		k.last[i] = v[i]
	}
	return k.sourceStats(), nil
}

func (k *kernelStats) sourceStats() capture.SourceStats {
	return capture.SourceStats{Received: k.total[0], Dropped: k.total[1], IfDropped: k.total[2], Freezes: k.total[3]}
}
