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

// wideStats extends the kernel's 32-bit capture counters to 64 bits. It
// sees every wrap as long as it is updated at least once per wrap.
type wideStats struct {
	last  [4]uint32
	total [4]uint64
}

func (w *wideStats) update(recv, drop, ifdrop, freeze uint32) capture.SourceStats {
	for i, v := range [4]uint32{recv, drop, ifdrop, freeze} {
		w.total[i] += uint64(v - w.last[i])
		w.last[i] = v
	}
	return capture.SourceStats{Received: w.total[0], Dropped: w.total[1], IfDropped: w.total[2], Freezes: w.total[3]}
}
