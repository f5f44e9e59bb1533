package detect

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestClock feeds the clock frames whose times misbehave, one way per case,
// and checks the time each counts at and what the clock counted.
func TestClock(t *testing.T) {
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC).UnixNano()
	const s, ms = int64(time.Second), int64(time.Millisecond)
	zero := int64(0)
	type frame struct {
		ns, want int64 // the frame's time, and the time it counts at (-1: none)
	}
	cases := []struct {
		name             string
		frames           []frame
		stepsBack, wrong uint64 // wrong: the frames of impossible time, all counted here
	}{
		{"in order", []frame{{t0, t0}, {t0 + 300*ms, t0 + 300*ms}, {t0 + 2*s, t0 + 2*s}}, 0, 0},
		{"reordered under a second: silent, at the clock", []frame{
			{t0 + s, t0 + s}, {t0 + 200*ms, t0 + s}, {t0 + s + 100*ms, t0 + s + 100*ms}}, 0, 0},
		{"a step back of an hour: the frames go on from the clock at their pace", []frame{
			{t0 + 10*s, t0 + 10*s},
			{t0 + 10*s - 3600*s, t0 + 10*s},
			{t0 + 10*s - 3600*s + 500*ms, t0 + 10*s + 500*ms},
			{t0 + 11*s - 3600*s + 200*ms, t0 + 11*s + 200*ms},
			{t0 + 20*s - 3600*s, t0 + 20*s}}, 1, 0},
		{"a stray frame an hour old changes nothing", []frame{
			{t0 + 10*s, t0 + 10*s}, {t0 + 10*s - 3600*s, t0 + 10*s},
			{t0 + 11*s, t0 + 11*s}, {t0 + 12*s, t0 + 12*s}}, 1, 0},
		{"reordered by 1.5 s: a late frame, and no drift", []frame{
			{t0 + 10*s, t0 + 10*s}, {t0 + 8*s + 400*ms, t0 + 10*s}, {t0 + 10*s + 100*ms, t0 + 10*s + 100*ms},
			{t0 + 11*s, t0 + 11*s}}, 1, 0},
		{"zero before the first valid time: no time to count at", []frame{
			{zero, -1}, {zero, -1}, {t0, t0}}, 0, 2},
		{"zero and 1994 in the middle: at the clock", []frame{
			{t0, t0}, {zero, t0}, {time.Date(1994, 12, 31, 0, 0, 0, 0, time.UTC).UnixNano(), t0}, {t0 + s, t0 + s}}, 0, 2},
		{"a year ahead does not move the clock", []frame{
			{t0, t0}, {t0 + 365*24*3600*s, t0}, {t0 + s, t0 + s}}, 0, 1},
		{"a day ahead is a gap", []frame{{t0, t0}, {t0 + 24*3600*s, t0 + 24*3600*s}}, 0, 0},
		{"frames that keep coming two days ahead: the capture's clock stepped", []frame{
			{t0, t0},
			{t0 + 2*24*3600*s, t0}, {t0 + 2*24*3600*s + 5*s, t0},
			{t0 + 2*24*3600*s + 10*s, t0 + 2*24*3600*s + 10*s},
			{t0 + 2*24*3600*s + 11*s, t0 + 2*24*3600*s + 11*s}}, 0, 2},
	}
	for _, c := range cases {
		var clk Clock
		for i, f := range c.frames {
			at, ok, invalid := clk.Frame(f.ns)
			if invalid {
				clk.CountInvalid(f.ns)
			}
			if f.want == -1 {
				if ok {
					t.Errorf("%s: frame %d counts at %v, want no time", c.name, i+1, time.Unix(0, at).UTC())
				}
				continue
			}
			if !ok || at != f.want {
				t.Errorf("%s: frame %d counts at %v (%v), want %v", c.name, i+1, time.Unix(0, at).UTC(), ok, time.Unix(0, f.want).UTC())
			}
		}
		st := clk.Stats()
		if st.StepsBack != c.stepsBack || st.Invalid != c.wrong {
			t.Errorf("%s: %d steps back, %d impossible; want %d and %d", c.name, st.StepsBack, st.Invalid, c.stepsBack, c.wrong)
		}
	}
}

// TestClockAdvance: a quiet capture moves the clock on, never back, and
// not before it started.
func TestClockAdvance(t *testing.T) {
	var clk Clock
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	clk.Advance(time.Unix(0, 0))
	if clk.Started() {
		t.Fatal("started at 1970")
	}
	clk.Frame(t0.UnixNano())
	clk.Advance(t0.Add(5 * time.Second))
	clk.Advance(t0.Add(time.Second))
	if !clk.Now().Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("clock at %v, want 5 s on", clk.Now())
	}
	// A frame from before the quiet's end counts at the clock.
	if at, _, _ := clk.Frame(t0.Add(4500 * time.Millisecond).UnixNano()); at != t0.Add(5*time.Second).UnixNano() {
		t.Fatalf("late frame at %v", time.Unix(0, at).UTC())
	}
}

// TestStampKeepsFrameTimeForEvidence: a packet counts at detection's clock,
// which never runs back, but its evidence keeps the time its frame says:
// it is evidence of what the capture held.
func TestStampKeepsFrameTimeForEvidence(t *testing.T) {
	ev := &memEvidence{max: 1000}
	h := newHarness(t, DefaultConfig())
	h.eng.KeepEvidence(ev)
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	var sent []time.Time
	// 400 pps from 4 reflectors for 3 s; the capture's clock steps back an
	// hour after 1.5 s.
	for i := range 1200 {
		ts := t0.Add(time.Duration(i) * 2500 * time.Microsecond)
		if i >= 600 {
			ts = ts.Add(-time.Hour)
		}
		refl := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}[i%4]
		p := udp(ts, refl+":7", "198.51.100.9:40000", make([]byte, 64))
		if !h.eng.Stamp(p) {
			t.Fatalf("packet %d has no time", i)
		}
		if p.Timestamp.Before(h.last) {
			t.Fatalf("packet %d stamped %v, before %v", i, p.Timestamp, h.last)
		}
		sent = append(sent, ts)
		h.feed(p)
	}
	h.flush()
	if len(ev.files) != 1 || len(h.out.alerts) == 0 {
		t.Fatalf("%d evidence files, %d alerts; want 1 and some", len(ev.files), len(h.out.alerts))
	}
	pkts := ev.files[0].pkts
	first := len(sent) - len(pkts)
	for i, p := range pkts {
		if !p.Timestamp.Equal(sent[first+i]) {
			t.Fatalf("evidence packet %d stamped %v, want the frame's %v", i, p.Timestamp, sent[first+i])
		}
	}
	if st := h.eng.Stats(); st.TimeStepsBack != 1 {
		t.Errorf("%d steps back, want 1", st.TimeStepsBack)
	}
	for _, a := range h.out.alerts {
		if a.Time.Before(t0) {
			t.Errorf("%s alert at %v, before the capture began", a.Phase(), a.Time)
		}
	}
}

// The fast path for the commonest frame gives what the general rules give,
// frame for frame, on captures whose clocks step back and forward, jump a
// day ahead, stray and go invalid, mixed with ordinary frames.
func TestClockFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 6))
	base := int64(1_700_000_000) * int64(time.Second)
	for run := range 200 {
		fast, slow := Clock{}, Clock{noFastPath: true}
		ns := base + rng.Int64N(int64(time.Hour))
		for i := range 2000 {
			switch r := rng.IntN(100); {
			case r < 70: // ordinary: a little later
				ns += rng.Int64N(int64(50 * time.Millisecond))
			case r < 78: // a little earlier, or up to a few seconds back
				ns -= rng.Int64N(int64(4 * time.Second))
			case r < 84: // a step back of minutes or hours
				ns -= rng.Int64N(int64(3 * time.Hour))
			case r < 90: // a step forward, sometimes past a day
				ns += rng.Int64N(int64(48 * time.Hour))
			case r < 93: // a stray frame, then back
				stray := ns + (rng.Int64N(2)*2-1)*rng.Int64N(int64(72*time.Hour))
				if a, b := frame(&fast, stray), frame(&slow, stray); a != b {
					t.Fatalf("run %d frame %d (stray %d): fast %v, general %v", run, i, stray, a, b)
				}
			case r < 95: // an impossible time
				bad := rng.Int64N(int64(time.Hour))
				if a, b := frame(&fast, bad), frame(&slow, bad); a != b {
					t.Fatalf("run %d frame %d (invalid): fast %v, general %v", run, i, a, b)
				}
				continue
			default: // the same time again
			}
			if a, b := frame(&fast, ns), frame(&slow, ns); a != b {
				t.Fatalf("run %d frame %d (%d): fast %v, general %v", run, i, ns, a, b)
			}
		}
		if fast.Stats() != slow.Stats() {
			t.Fatalf("run %d: stats %+v, general %+v", run, fast.Stats(), slow.Stats())
		}
	}
}

type framed struct {
	at          int64
	ok, invalid bool
}

func frame(c *Clock, ns int64) framed {
	at, ok, invalid := c.Frame(ns)
	return framed{at, ok, invalid}
}

// The reporter's packet time never goes back, whether it moves by a
// time (Tick, Flush, an unstamped packet) or by a frame's nanoseconds,
// and it is the latest of them, in UTC, when read.
func TestReporterClock(t *testing.T) {
	var r reporter
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 5, time.UTC)
	if !r.nowTime().IsZero() {
		t.Fatalf("before any time: %v", r.nowTime())
	}
	steps := []struct {
		ns   int64     // a frame's time, or
		at   time.Time // a time
		want time.Time
	}{
		{at: t0, want: t0},
		{ns: t0.Add(-time.Second).UnixNano(), want: t0},
		{ns: t0.Add(time.Millisecond).UnixNano(), want: t0.Add(time.Millisecond)},
		{at: t0, want: t0.Add(time.Millisecond)},
		{at: t0.Add(2 * time.Second).In(time.FixedZone("X", 3600)), want: t0.Add(2 * time.Second)},
		{ns: t0.Add(time.Second).UnixNano(), want: t0.Add(2 * time.Second)},
		{at: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC), want: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ns: t0.Add(time.Hour).UnixNano(), want: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, s := range steps {
		if s.ns != 0 {
			r.clockNs(s.ns)
		} else {
			r.clock(s.at)
		}
		if got := r.nowTime(); !got.Equal(s.want) {
			t.Errorf("step %d: now %v, want %v", i, got, s.want)
		}
		if got, want := r.second, r.nowTime().Unix(); got != want {
			t.Errorf("step %d: swept second %d, want %d", i, got, want)
		}
	}
}
