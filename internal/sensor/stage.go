package sensor

import (
	"math"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// stage tracks flows and runs detection on what several workers keep, on
// the engine's goroutine.
type stage struct {
	s     *Sensor
	quiet quietClock // live: moves the clock on while no frame comes
}

// take hands the packets of c to flows and detection in capture order,
// putting each record's frame time on detection's clock before its packet
// (see chunk.see).
func (st *stage) take(c *chunk) {
	s := st.s
	for i := range c.recs {
		rec := &c.recs[i]
		s.eng.Frame(rec.clock)
		if rec.tick {
			continue
		}
		pkt := c.packet(rec)
		if pkt.Fragment {
			s.frags.Attribute(pkt)
		}
		if rec.hasSum && s.dedup.SeenSum(rec.sum, pkt.Timestamp) {
			continue
		}
		if !s.eng.Stamp(pkt) {
			continue // no time to count it at
		}
		f, dir := s.flows.Update(pkt)
		s.eng.Packet(pkt, f, dir)
	}
	if c.last != math.MinInt64 && !c.more { // a part's next part goes on from it
		s.eng.Frame(c.last)
	}
}

// check checks the region of c, a chunk of a split file, in order: it
// reads again a region that guessed wrong where its first record starts,
// and empties a chunk whose file ended before it.
func (st *stage) check(c *chunk) {
	sp, reg := st.s.split, c.region
	v, err := sp.Check(reg)
	if v != capture.Accept { // what its worker counted was not the capture's
		st.s.unread.add(c.counted)
	}
	switch v {
	case capture.Skip:
		c.reset()
	case capture.Reread:
		reg = sp.Reread(reg)
		c.reset()
		c.src = reg
		st.s.redo.decodeChunk(c, nil, nil) // whole, into c: no parts
		_, err = sp.Check(reg)             // its start is known: accepted
	}
	c.err = err
}

// parts takes the parts of a region (see chunk.more), the first of them c,
// as they come from out, if take and if its reader found its first record
// where the region before it ended, and returns the region's chunk, which
// follows them. A region that Check will read again, or skip, has its
// parts dropped here.
func (st *stage) parts(c *chunk, out <-chan *chunk, take bool) *chunk {
	take = take && st.s.split.Follows(c.region, c.start) == capture.Accept
	for ; c.more; c = <-out {
		if take {
			st.take(c)
		}
		c.reset()
		c.home <- c
	}
	return c
}

// inOrder takes the workers' chunks in the order the dealer dealt them. A
// capture file's error is a warning; any other error ends the sensor's
// work: stop tells the dealer, and the chunks still in flight are drained
// unread.
func (st *stage) inOrder(tickets <-chan int, outs []chan *chunk, stop chan struct{}) (warnings []error, err error) {
	tick, quiet, stopTickers := st.tickers()
	defer stopTickers()
	for {
		var w int
		var ok bool
		select {
		case w, ok = <-tickets:
		case now := <-quiet:
			st.idle(now)
			continue
		case <-tick:
			st.s.cfg.Ticker.Tick()
			continue
		case <-st.s.reloadDue():
			st.s.cfg.Reloader.Apply()
			continue
		}
		if !ok {
			return warnings, err
		}
		c := <-outs[w]
		if c.more {
			c = st.parts(c, outs[w], err == nil)
		}
		if c.region != nil {
			st.check(c)
		}
		if err == nil {
			st.take(c)
			var ws []error
			ws, err = inputErrors(c.err)
			warnings = append(warnings, ws...)
			if err != nil {
				close(stop)
			}
		}
		c.reset()
		c.home <- c
	}
}

// asTheyCome takes the workers' chunks as they come (AF_PACKET).
func (st *stage) asTheyCome(out <-chan *chunk) {
	tick, quiet, stopTickers := st.tickers()
	defer stopTickers()
	for {
		select {
		case now := <-quiet:
			st.idle(now)
		case c, ok := <-out:
			if !ok {
				return
			}
			st.take(c)
			c.reset()
			c.home <- c
		case <-tick:
			st.s.cfg.Ticker.Tick()
		case <-st.s.reloadDue():
			st.s.cfg.Reloader.Apply()
		}
	}
}

// reloadDue is the Reloader's Due, or nil (never) without one.
func (s *Sensor) reloadDue() <-chan struct{} {
	if s.cfg.Reloader == nil {
		return nil
	}
	return s.cfg.Reloader.Due()
}

// tickers returns the ticks of the Ticker and, live, of the checks for a
// quiet capture.
func (st *stage) tickers() (tick, quiet <-chan time.Time, stop func()) {
	var stops []func()
	if st.s.cfg.Live {
		q := time.NewTicker(250 * time.Millisecond)
		quiet, stops = q.C, append(stops, q.Stop)
	}
	if st.s.cfg.Ticker != nil {
		t := time.NewTicker(st.s.cfg.TickEvery)
		tick, stops = t.C, append(stops, t.Stop)
	}
	return tick, quiet, func() {
		for _, s := range stops {
			s()
		}
	}
}

// idle moves detection's clock on by wall time while no frame comes (see
// quietClock); now is the wall time of the quiet ticker.
func (st *stage) idle(now time.Time) {
	if at, ok := st.quiet.at(st.s.eng.Now(), now); ok {
		st.s.eng.Tick(at)
	}
}

// quietClock moves detection's clock on from where the last frame left it
// by the wall time that has passed since the capture went quiet, less
// quietGrace, so that live incidents end when an attack stops rather than
// at the next packet. It adds the wall time up reading by reading, each
// step at most maxQuietStep and never back: a step of the host's clock (in
// readings without Go's monotonic clock) neither stops detection's clock
// nor throws it forward, and updates and ends keep coming.
type quietClock struct {
	from  time.Time     // detection's clock as the last frame left it
	quiet time.Duration // wall time since, added up reading by reading
	clock time.Time     // what the last reading returned
	wall  time.Time     // the wall time of the last reading
}

// maxQuietStep is the most that detection's clock moves on between two
// readings, which come every quarter second or so.
const maxQuietStep = 2 * time.Second

// quietGrace is how far the quiet clock stays behind the wall time that
// passed: frames stamped before a reading may reach the sensor after it
// (AF_PACKET hands them over a block at a time, libpcap a buffer), and a
// clock moved past them would count them late, at its own time.
const quietGrace = time.Second

// at returns detection's clock at wall time now, given where it stands
// (clock, as the frames and the last reading left it); ok is false before
// the first frame.
func (q *quietClock) at(clock, now time.Time) (at time.Time, ok bool) {
	step := min(max(now.Sub(q.wall), 0), maxQuietStep)
	q.wall = now
	if clock.IsZero() {
		return time.Time{}, false
	}
	if !clock.Equal(q.clock) { // a frame moved it: the quiet starts now
		q.from, q.quiet, q.clock = clock, 0, clock
		return clock, true
	}
	q.quiet += step
	q.clock = q.from.Add(max(q.quiet-quietGrace, 0))
	return q.clock, true
}
