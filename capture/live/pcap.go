package live

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"

	"github.com/echowatch/echowatch/capture"
)

// Pcap is a live capture through libpcap, with its filter in the kernel.
//
// One goroutine reads it. Close may be called from any goroutine, also
// while that goroutine is blocked in ReadFrame: the read then returns
// io.EOF within about 100 ms. A frame's Data points into libpcap's ring
// and is valid until the next ReadFrame or until Close returns; Close
// waits for a reader still using its last frame to ask for the next one
// (at most a second) before it releases the ring. Stats may be called from
// any goroutine, before and after Close.
type Pcap struct {
	iface    string
	linkType layers.LinkType
	lease    *lease
	handle   *pcap.Handle // closed by the lease's release
	stats    kernelStats
}

var (
	_ capture.Source      = (*Pcap)(nil)
	_ capture.StatsSource = (*Pcap)(nil)
)

// OpenPcap opens a live capture on cfg.Interface through libpcap.
func OpenPcap(cfg Config) (*Pcap, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	inactive, err := pcap.NewInactiveHandle(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, err)
	}
	defer inactive.CleanUp()
	setup := []struct {
		what string
		err  error
	}{
		{"snap length", inactive.SetSnapLen(cfg.Snaplen)},
		{"promiscuous mode", inactive.SetPromisc(cfg.Promisc)},
		// A read timeout, rather than blocking forever, lets a read notice
		// Close; libpcap also retires a partly filled ring block after it,
		// so it bounds the latency at low rates.
		{"read timeout", inactive.SetTimeout(readTimeout)},
		{"buffer size", inactive.SetBufferSize(cfg.BufferSize)},
	}
	for _, s := range setup {
		if s.err != nil {
			return nil, fmt.Errorf("capture/live: %s: set %s: %w", cfg.Interface, s.what, s.err)
		}
	}
	h, err := inactive.Activate()
	if err != nil {
		return nil, activateError(cfg.Interface, err, inactive.Error())
	}
	if err := h.SetBPFFilter(cfg.BPF); err != nil {
		h.Close()
		return nil, bpfError(cfg.Interface, cfg.BPF, err)
	}
	lt := fromDLT(h.LinkType())
	if err := capture.CheckLinkType(lt); err != nil {
		h.Close()
		return nil, fmt.Errorf("capture/live: %s: %w", cfg.Interface, err)
	}
	p := &Pcap{iface: cfg.Interface, linkType: lt, handle: h}
	p.stats = kernelStats{iface: cfg.Interface, read: func() ([4]uint32, error) {
		st, err := h.Stats()
		if err != nil {
			return [4]uint32{}, err
		}
		return [4]uint32{uint32(st.PacketsReceived), uint32(st.PacketsDropped), uint32(st.PacketsIfDropped), 0}, nil
	}}
	p.lease = newLease(p.release)
	return p, nil
}

// activateError turns libpcap's activation failure into one clear line.
// gopacket reports the status code only as text ("No Such Device"), and
// libpcap's own message (detail) is sometimes empty.
func activateError(iface string, err, detail error) error {
	msg := err.Error()
	switch msg {
	case "No Such Device":
		return fmt.Errorf("capture/live: %s: %w", iface, ErrNoDevice)
	case "Permission Denied":
		// Unprivileged, libpcap fails before it looks for the device.
		if _, ierr := net.InterfaceByName(iface); ierr != nil && iface != "any" {
			return fmt.Errorf("capture/live: %s: %w", iface, ErrNoDevice)
		}
		return fmt.Errorf("capture/live: %s: %w", iface, ErrPermission)
	case "Interface Not Up":
		return fmt.Errorf("capture/live: %s: interface is down", iface)
	}
	if d := detail.Error(); d != "" && !strings.Contains(msg, d) {
		msg += ": " + d
	}
	return fmt.Errorf("capture/live: %s: %s", iface, msg)
}

// ReadFrame fills f with the next frame. It returns capture.ErrTimeout when
// no frame came within the read timeout (100 ms), and io.EOF once Close has
// been called.
func (p *Pcap) ReadFrame(f *capture.Frame) error {
	if !p.lease.begin() {
		return io.EOF
	}
	h := p.handle
	for {
		data, ci, err := h.ZeroCopyReadPacketData()
		if err == nil {
			if !p.lease.end(true) {
				return io.EOF
			}
			*f = capture.Frame{
				Data:          data,
				Timestamp:     ci.Timestamp,
				CaptureLength: ci.CaptureLength,
				Length:        ci.Length,
				LinkType:      p.linkType,
				Interface:     ci.InterfaceIndex,
			}
			return nil
		}
		if errors.Is(err, pcap.NextErrorTimeoutExpired) && !p.lease.stopping() {
			// Give the caller its chance to flush and to notice a stop.
			if !p.lease.end(false) {
				return io.EOF
			}
			return capture.ErrTimeout
		}
		// A timeout here means Close was called, and end releases.
		if !p.lease.end(false) || err == io.EOF {
			return io.EOF
		}
		if errors.Is(err, pcap.NextErrorReadError) {
			// The reason (such as "The interface disappeared") is in
			// libpcap's error buffer, not in the status code.
			return fmt.Errorf("capture/live: %s: read: %v", p.iface, h.Error())
		}
		return fmt.Errorf("capture/live: %s: read: %w", p.iface, err)
	}
}

// Close stops the capture and releases it, as the Pcap doc describes. It
// is safe to call more than once.
func (p *Pcap) Close() error {
	p.lease.close()
	return nil
}

// release closes the handle, keeping its last counters for Stats.
func (p *Pcap) release() { p.stats.release(p.handle.Close) }

// Stats returns libpcap's counters: frames that passed the filter (Linux
// counts those dropped too), frames dropped for want of buffer space, and
// frames the interface dropped. After Close it returns the last counters.
// libpcap's counters are 32 bits wide: read them at least once per 4
// billion frames.
func (p *Pcap) Stats() (capture.SourceStats, error) {
	return p.stats.get()
}

// LinkType returns the link type of the frames, as a pcap file names it.
func (p *Pcap) LinkType() layers.LinkType { return p.linkType }
