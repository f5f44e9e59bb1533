package sinks

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// datagramConn sends one message per datagram (UDP, unix datagram
// sockets). Nothing confirms a datagram: what was sent counts as
// delivered. A collector that is down shows as refused writes on the
// connected socket, and the Queue then sends again from that message on.
type datagramConn struct {
	s      *Syslog
	c      net.Conn
	max    int // largest message a datagram carries
	buf    []byte
	unsent []*Record
}

var _ Conn = (*datagramConn)(nil)

func (c *datagramConn) Send(ctx context.Context, recs []*Record) (Progress, error) {
	var p Progress
	stop := context.AfterFunc(ctx, func() { c.c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	for i, r := range recs {
		if err := ctx.Err(); err != nil {
			c.unsent = append(c.unsent, recs[i:]...)
			return p, err
		}
		c.buf = c.s.appendMessage(c.buf[:0], r)
		if len(c.buf) > c.max {
			p.Rejected++
			continue
		}
		c.c.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		if _, err := c.c.Write(c.buf); err != nil {
			c.unsent = append(c.unsent, recs[i:]...)
			return p, err
		}
		p.Delivered++
	}
	return p, nil
}

func (c *datagramConn) Close() []*Record {
	c.c.Close()
	return c.unsent
}

// streamConn sends messages over TCP, TLS or a unix stream socket: with
// octet counting ("LEN SP MSG", RFC 6587 section 3.4.1, and RFC 5425), or
// one per line on a unix socket.
//
// A write that returns has only reached the kernel. A message counts as
// delivered once the peer's TCP has acknowledged its bytes and the
// connection has stayed up for SettleTime since, time enough for a live
// collector to read it (a collector that dies with messages unread resets
// the connection); when the connection breaks first, it is sent again on
// the next one (at least once). When the Queue is short of room, an
// acknowledged message counts at once: SettleTime is a margin taken while
// there is room, never a bound on the rate. Syslog servers never write to
// us, so a reader notices at once when the collector closes or resets the
// connection.
type streamConn struct {
	s       *Syslog
	c       net.Conn     // what messages are written to
	tcp     *net.TCPConn // the socket under c, to ask what the peer acknowledged
	counted *countedConn // counts the bytes written to the socket
	octets  bool         // octet counting, else newline framing

	sent      []sentRecord // written, not yet settled, in order
	acked     int          // sent[:acked] are acknowledged by the peer
	unwritten []*Record    // given after a write failed
	buf, msg  []byte
	ends      []int

	readDone chan struct{} // closed when the peer closed or reset
	readErr  error         // why, once readDone is closed
}

type sentRecord struct {
	r       *Record
	end     int64     // socket bytes written once r was
	ackedAt time.Time // when the peer was seen to acknowledge it
}

var (
	_ Conn    = (*streamConn)(nil)
	_ Settler = (*streamConn)(nil)
)

func newStreamConn(s *Syslog, c net.Conn, tcp *net.TCPConn, counted *countedConn, octets bool) *streamConn {
	sc := &streamConn{s: s, c: c, tcp: tcp, counted: counted, octets: octets, readDone: make(chan struct{})}
	go sc.read()
	return sc
}

// read waits for the peer to close the connection: a collector sends
// nothing.
func (c *streamConn) read() {
	var buf [512]byte
	for {
		if _, err := c.c.Read(buf[:]); err != nil {
			c.readErr = err
			close(c.readDone)
			return
		}
	}
}

// broken returns why the connection is unusable, or nil.
func (c *streamConn) broken() error {
	select {
	case <-c.readDone:
		if errors.Is(c.readErr, io.EOF) || errors.Is(c.readErr, io.ErrUnexpectedEOF) {
			return errors.New("connection closed by the collector")
		}
		return c.readErr
	default:
		return nil
	}
}

func (c *streamConn) Send(ctx context.Context, recs []*Record) (Progress, error) {
	if err := c.broken(); err != nil {
		c.unwritten = append(c.unwritten, recs...)
		return Progress{}, err
	}
	c.buf, c.ends = c.buf[:0], c.ends[:0]
	for _, r := range recs {
		c.msg = c.s.appendMessage(c.msg[:0], r)
		if c.octets {
			c.buf = strconv.AppendInt(c.buf, int64(len(c.msg)), 10)
			c.buf = append(c.buf, ' ')
			c.buf = append(c.buf, c.msg...)
		} else {
			c.buf = append(c.buf, c.msg...)
			c.buf = append(c.buf, '\n')
		}
		c.ends = append(c.ends, len(c.buf))
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetWriteDeadline(time.Unix(1, 0)) })
	c.c.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	n, err := c.c.Write(c.buf)
	stop()
	end := c.socketBytes()
	k := 0
	for k < len(recs) && c.ends[k] <= n {
		c.sent = append(c.sent, sentRecord{r: recs[k], end: end})
		k++
	}
	if err != nil {
		c.unwritten = append(c.unwritten, recs[k:]...)
		return Progress{}, err
	}
	return Progress{}, nil // the Queue asks Settle
}

// Settle implements Settler.
func (c *streamConn) Settle(hurry bool) (Progress, error) {
	if err := c.broken(); err != nil {
		return Progress{}, err
	}
	c.ack()
	n := c.acked
	if !hurry {
		now := time.Now()
		n = 0
		for n < c.acked && now.Sub(c.sent[n].ackedAt) >= c.s.cfg.SettleTime {
			n++
		}
	}
	if n > 0 {
		c.sent = c.sent[:copy(c.sent, c.sent[n:])]
		c.acked -= n
	}
	return Progress{Delivered: n}, nil
}

// ack marks the records whose bytes the peer has acknowledged since the
// last look, as of now.
func (c *streamConn) ack() {
	acked := c.socketBytes() - unacked(c.tcp)
	now := time.Now()
	for c.acked < len(c.sent) && c.sent[c.acked].end <= acked {
		c.sent[c.acked].ackedAt = now
		c.acked++
	}
}

// drainEvery is how often Drain looks at what the peer acknowledged.
const drainEvery = 5 * time.Millisecond

// Drain implements Settler: it ends our side of the stream and waits until
// everything sent is settled as Settle says: acknowledged, and the
// connection up for SettleTime since. A collector that closes its side
// once it has read our end of stream settles everything at once; one that
// keeps its side open is no failure.
func (c *streamConn) Drain(ctx context.Context) (Progress, error) {
	if len(c.sent) == 0 && len(c.unwritten) == 0 {
		return Progress{}, nil
	}
	if err := c.broken(); err != nil {
		return Progress{}, err
	}
	if len(c.unwritten) > 0 {
		return Progress{}, errors.New("a write failed")
	}
	switch cw := c.c.(type) {
	case interface{ CloseWrite() error }: // TCP, TLS (close_notify), unix
		cw.CloseWrite()
	}
	if c.tcp != nil {
		c.tcp.CloseWrite()
	}
	tick := time.NewTicker(drainEvery)
	defer tick.Stop()
	var p Progress
	for {
		select {
		case <-c.readDone:
			if !errors.Is(c.readErr, io.EOF) && !errors.Is(c.readErr, io.ErrUnexpectedEOF) {
				return p, c.readErr
			}
			// The collector read up to our end of stream, and its TCP
			// acknowledged what it read with its own.
			c.ack()
			n := c.acked
			c.sent, c.acked = c.sent[:copy(c.sent, c.sent[n:])], 0
			p.Delivered += n
			if len(c.sent) > 0 {
				return p, errors.New("connection closed by the collector")
			}
			return p, nil
		case <-tick.C:
		case <-ctx.Done():
			return p, ctx.Err()
		}
		q, err := c.Settle(false)
		p.Delivered += q.Delivered
		if err != nil {
			continue // readDone is closed: the case above says what it means
		}
		if len(c.sent) == 0 {
			return p, nil
		}
	}
}

func (c *streamConn) Close() []*Record {
	c.c.Close()
	unsent := make([]*Record, 0, len(c.sent)+len(c.unwritten))
	for _, s := range c.sent {
		unsent = append(unsent, s.r)
	}
	return append(unsent, c.unwritten...)
}

// socketBytes is how many bytes were written to the socket so far.
func (c *streamConn) socketBytes() int64 {
	if c.counted == nil {
		return 0
	}
	return c.counted.n.Load()
}

// countedConn counts the bytes written through it: under TLS, those of
// the records on the wire.
type countedConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
