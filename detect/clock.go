package detect

import (
	"math"
	"time"
)

// Clock is detection's clock: the frames' own times, mapped so that it
// never runs backward. A frame counts at its time plus an offset that
// changes only at a step back of the capture's clock:
//
//   - A frame behind the clock within the clock's second or the one before
//     (reordering under a second) counts at the clock's time, silently.
//   - A frame two or more seconds behind is counted, and counts at the
//     clock's time: a step back (an NTP step, a reordered capture queue)
//     or a stray late frame. The frames of its second go on from there at
//     their own pace; the first frame of another second tells which it
//     was. If that frame too is behind, where the step would put it, the
//     capture's clock stepped: the offset takes the step, and the frames
//     after it go on from the clock at their own pace. Otherwise the late
//     frame was a stray, and nothing changes.
//   - An impossible time is counted and counts at the clock's time, never
//     moving it: before 1995 (zero, and the like), or more than a day
//     past the clock. Frames that keep coming past that day, second after
//     second for aheadConfirm, are the capture's clock stepping forward:
//     the clock takes the step, as any gap in the traffic.
//
// Its rules look at whole seconds only (a frame's own second plus the
// offset's), so that frames of the same second as the frame before them
// always fare the same way: a caller may show it only the first frame of
// each second, the largest time of each, and the frames that matter to it
// (the sensor's workers do, see internal/sensor), and get what every frame
// would give.
//
// A Clock belongs to the Engine's goroutine. Its zero value is ready: it
// starts at the first valid time.
type Clock struct {
	now     int64 // detection time, Unix ns, once started
	started bool
	offset  int64 // detection time of a frame = its time + offset
	// step is the offset a late frame would have the clock take, when
	// stepping: the frames of stepSec, the late frame's own second, count
	// with it until a frame of another second confirms or drops it.
	step     int64
	stepSec  int64
	stepping bool
	// ahead and aheadLast are the seconds (of the frames' own time) of the
	// first and the latest of the frames in a row that lay more than a day
	// past the clock, while aheadOn.
	ahead, aheadLast int64
	aheadOn          bool
	stats            ClockStats

	// noFastPath, for tests, sends every frame through the general rules.
	noFastPath bool
}

// ClockStats are a Clock's counters.
type ClockStats struct {
	// StepsBack counts the frames that came two seconds or more behind
	// the clock, not in a step it took: once per step back of the
	// capture's clock, and once per stray late frame.
	StepsBack uint64
	// Invalid counts the packets whose time was impossible (see Clock), of
	// those the Engine wants.
	Invalid uint64
	// FirstStepBack and FirstInvalid say when the first of each came, for
	// a warning; zero until then.
	FirstStepBack, FirstInvalid ClockEvent
}

// ClockEvent is a frame's own time and detection's clock when it came (zero
// when there was none yet).
type ClockEvent struct {
	Frame, Clock time.Time
}

const (
	// clockEpoch is 1995-01-01T00:00:00Z in Unix seconds: no capture is
	// older, and a frame that says so carries no time.
	clockEpoch = 788918400
	// maxAhead is how far past the clock a frame may lie, in seconds.
	maxAhead = 86400
	// aheadConfirm is how long, in seconds of their own time, frames must
	// keep coming past maxAhead for the clock to take them; aheadGap the
	// largest gap between two of them.
	aheadConfirm = 10
	aheadGap     = 60
)

// FrameNanos returns a frame's time in Unix nanoseconds, for a Clock: times
// before 1970 (the zero time.Time among them) as 0, and times past what
// an int64 holds as its largest value. A Clock judges both impossible.
func FrameNanos(t time.Time) int64 {
	switch s := t.Unix(); {
	case s < 0:
		return 0
	case s >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// seconds is the second that ns falls in.
func seconds(ns int64) int64 {
	s := ns / 1e9
	if ns%1e9 < 0 {
		s--
	}
	return s
}

// Started reports whether the clock has had a valid time.
func (c *Clock) Started() bool { return c.started }

// Now returns detection time: the zero time before the clock started.
func (c *Clock) Now() time.Time {
	if !c.started {
		return time.Time{}
	}
	return time.Unix(0, c.now).UTC()
}

// Stats returns the clock's counters.
func (c *Clock) Stats() ClockStats { return c.stats }

// Frame puts a frame of time ns (FrameNanos) on the clock, and returns the
// detection time it counts at; ok is false for an impossible time before
// the clock started, which has no time to count at. invalid says the time
// was impossible: the caller counts it (CountInvalid) if it is a packet
// that matters.
func (c *Clock) Frame(ns int64) (at int64, ok, invalid bool) {
	// The commonest frame, by far: at most a second past the clock as the
	// clock's offset maps it, with no step or jump under way. The rules
	// below give it the same: neither ahead nor behind, it moves the clock
	// to its own time.
	if m := ns + c.offset; c.started && !c.stepping && !c.noFastPath && ns >= clockEpoch*int64(time.Second) &&
		m >= c.now && m-c.now < int64(time.Second) {
		c.aheadOn = false
		c.now = m
		return m, true, false
	}
	s := seconds(ns)
	if s < clockEpoch {
		return c.now, c.started, true
	}
	if !c.started {
		c.now, c.started = ns, true
		return ns, true, false
	}
	now := seconds(c.now)
	if c.stepping && s != c.stepSec {
		// The first frame of another second than the late frame's: if it
		// is where the step would put it, and as far behind without it,
		// the capture's clock stepped back.
		c.stepping = false
		if p := s + seconds(c.step); p >= now-1 && p <= now+1 && s+seconds(c.offset) <= now-2 {
			c.offset = c.step
		}
	}
	off := c.offset
	if c.stepping {
		off = c.step // a frame of the late frame's second
	}
	ms := s + seconds(off) // the frame's second on the clock, as its own second maps
	m := ns + off
	switch {
	case ms > now+maxAhead:
		switch {
		case !c.aheadOn || s < c.aheadLast || s > c.aheadLast+aheadGap:
			c.ahead, c.aheadLast, c.aheadOn = s, s, true
		case s-c.ahead < aheadConfirm:
			c.aheadLast = s
		default: // the capture's clock stepped forward
			c.aheadOn = false
			c.now = m
			return m, true, false
		}
		return c.now, true, true
	case ms <= now-2:
		c.stats.StepsBack++
		if c.stats.StepsBack == 1 {
			c.stats.FirstStepBack = ClockEvent{time.Unix(0, ns).UTC(), c.Now()}
		}
		c.step, c.stepSec, c.stepping = off+c.now-m, s, true
		m = c.now
	}
	c.aheadOn = false
	c.now = max(c.now, m)
	return c.now, true, false
}

// CountInvalid counts a packet whose time ns Frame found impossible.
func (c *Clock) CountInvalid(ns int64) {
	c.stats.Invalid++
	if c.stats.Invalid == 1 {
		c.stats.FirstInvalid = ClockEvent{time.Unix(0, ns).UTC(), c.Now()}
	}
}

// Advance moves the clock on to t, detection time, without a frame (a
// quiet capture): never back.
func (c *Clock) Advance(t time.Time) {
	ns := FrameNanos(t)
	if !c.started {
		if seconds(ns) >= clockEpoch {
			c.now, c.started = ns, true
		}
		return
	}
	c.now = max(c.now, ns)
}
