package capture

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// CapturedDatagrams is a DatagramSource of the UDP datagrams in a capture
// (a capture file of what exporters sent, read to replay it): each frame is
// decoded, and a whole UDP datagram's payload is a datagram from the
// frame's source address. A frame that holds none (another protocol, an IP
// fragment, a datagram cut by the snap length) is counted and passed over.
type CapturedDatagrams struct {
	src    Source
	dec    *Decoder
	frame  Frame
	pkt    Packet
	notUDP uint64
}

// NewCapturedDatagrams returns a DatagramSource of src's UDP datagrams.
func NewCapturedDatagrams(src Source) *CapturedDatagrams {
	return &CapturedDatagrams{src: src, dec: NewDecoder()}
}

// ReadDatagram implements DatagramSource.
func (c *CapturedDatagrams) ReadDatagram(d *Datagram) error {
	for {
		if err := c.src.ReadFrame(&c.frame); err != nil {
			return err
		}
		p := &c.pkt
		if c.dec.Decode(&c.frame, p) != DropNone || p.Proto != ProtoUDP || !p.HasPorts ||
			p.Fragment || len(p.Payload) != p.PayloadLen {
			c.notUDP++
			continue
		}
		*d = Datagram{Data: p.Payload, From: p.Src, Port: p.DstPort, Timestamp: c.frame.Timestamp}
		return nil
	}
}

// NotUDP returns how many frames held no whole UDP datagram.
func (c *CapturedDatagrams) NotUDP() uint64 { return c.notUDP }

// Source returns the capture the datagrams are read from.
func (c *CapturedDatagrams) Source() Source { return c.src }

// Close closes the capture.
func (c *CapturedDatagrams) Close() error { return c.src.Close() }

// Collector is a DatagramSource of the datagrams that exporters send to
// UDP sockets: one for sFlow, one for NetFlow and IPFIX, or both. Each
// socket is read on a goroutine of its own into buffers it owns; a
// datagram is stamped with the time it was read. ReadDatagram returns
// ErrTimeout when none came within the read timeout, and io.EOF once
// closed.
type Collector struct {
	socks   []*net.UDPConn
	in      chan *datagramBuf
	free    chan *datagramBuf
	held    *datagramBuf // the buffer of the datagram last returned
	timeout time.Duration
	timer   *time.Timer
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error // the first failed read, which stops the Collector
}

// CollectorConfig says where a Collector listens.
type CollectorConfig struct {
	// SFlow and NetFlow are the UDP addresses to listen on ("" for none):
	// host:port, :port, or a port alone.
	SFlow, NetFlow string
	// Timeout is how long ReadDatagram waits; 0 is a second.
	Timeout time.Duration
	// Buffers is how many datagrams may wait to be read; 0 is 1024.
	Buffers int
}

type datagramBuf struct {
	b      [65536]byte
	n      int
	from   netip.AddrPort
	port   uint16
	at     time.Time
	accept TelemetryFormat
}

// Default telemetry ports, for an address given without one.
const (
	SFlowPort   = "6343"
	NetFlowPort = "2055"
)

// ListenTelemetry opens the Collector's sockets.
func ListenTelemetry(cfg CollectorConfig) (*Collector, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Buffers == 0 {
		cfg.Buffers = 1024
	}
	c := &Collector{in: make(chan *datagramBuf, cfg.Buffers), free: make(chan *datagramBuf, cfg.Buffers+4),
		timeout: cfg.Timeout, done: make(chan struct{})}
	for range cfg.Buffers + 4 {
		c.free <- new(datagramBuf)
	}
	for _, l := range []struct {
		addr, port, flag string
		f                TelemetryFormat
	}{{cfg.SFlow, SFlowPort, "sflow", TelemetrySFlow}, {cfg.NetFlow, NetFlowPort, "netflow", TelemetryNetFlow9}} {
		if l.addr == "" {
			continue
		}
		addr, err := listenAddr(l.addr, l.port)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("capture: %s: %w", l.flag, err)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("capture: %s: %w", l.flag, err)
		}
		// Exports come in bursts: let the kernel hold a few megabytes.
		_ = conn.SetReadBuffer(8 << 20)
		c.socks = append(c.socks, conn)
		port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
		c.wg.Add(1)
		go c.read(conn, port, l.f)
	}
	if len(c.socks) == 0 {
		c.Close()
		return nil, errors.New("capture: telemetry: no address to listen on")
	}
	c.timer = time.NewTimer(c.timeout)
	return c, nil
}

// listenAddr reads host:port, :port or a port alone.
func listenAddr(s, port string) (*net.UDPAddr, error) {
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		s = ":" + s
	} else if _, _, err := net.SplitHostPort(s); err != nil {
		s = net.JoinHostPort(s, port)
	}
	return net.ResolveUDPAddr("udp", s)
}

// Addrs returns the addresses the sockets listen on, sFlow's first.
func (c *Collector) Addrs() []net.Addr {
	var out []net.Addr
	for _, s := range c.socks {
		out = append(out, s.LocalAddr())
	}
	return out
}

// read reads conn until it is closed.
func (c *Collector) read(conn *net.UDPConn, port uint16, f TelemetryFormat) {
	defer c.wg.Done()
	for {
		var b *datagramBuf
		select {
		case b = <-c.free:
		case <-c.done:
			return
		}
		n, from, err := conn.ReadFromUDPAddrPort(b.b[:])
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				c.err = cmp.Or(c.err, fmt.Errorf("capture: telemetry: read: %w", err))
				c.mu.Unlock()
			}
			return
		}
		b.n, b.from, b.port, b.at, b.accept = n, from, port, time.Now(), f
		select {
		case c.in <- b:
		case <-c.done:
			return
		}
	}
}

// ReadDatagram implements DatagramSource.
func (c *Collector) ReadDatagram(d *Datagram) error {
	if c.held != nil {
		c.free <- c.held
		c.held = nil
	}
	if !c.timer.Stop() {
		select {
		case <-c.timer.C:
		default:
		}
	}
	c.timer.Reset(c.timeout)
	select {
	case b := <-c.in:
		c.held = b
		*d = Datagram{Data: b.b[:b.n], From: b.from.Addr(), Port: b.port, Timestamp: b.at, Accept: b.accept}
		return nil
	case <-c.timer.C:
		return ErrTimeout
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			return c.err
		}
		return io.EOF
	}
}

// Close closes the sockets and ends the reads; safe to call twice and from
// any goroutine.
func (c *Collector) Close() error {
	c.once.Do(func() {
		close(c.done)
		for _, s := range c.socks {
			s.Close()
		}
	})
	return nil
}
