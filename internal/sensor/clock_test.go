package sensor

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// alertLog keeps what the tests of the clock look at in each alert.
type alertLog struct{ alerts []seenAlert }

type seenAlert struct {
	at     time.Time
	phase  detect.Phase
	victim string
	peak   float64
}

func (l *alertLog) WriteAlert(a *detect.Alert) {
	l.alerts = append(l.alerts, seenAlert{a.Time, a.Incident.Phase, a.Incident.Victim.String(), a.Incident.PeakPPS})
}

// checkMonotonic fails unless the alerts' times never go back and all lie
// within from and to.
func checkMonotonic(t *testing.T, alerts []seenAlert, from, to time.Time) {
	t.Helper()
	var last time.Time
	for i, a := range alerts {
		if a.at.Before(last) || a.at.Before(from) || a.at.After(to) {
			t.Errorf("alert %d (%v) at %v: after %v, or outside %v to %v", i+1, a.phase, a.at, last, from, to)
		}
		last = a.at
	}
}

// TestClockCases runs the captures whose clock misbehaves with one worker
// and with three: each incident has the rate the packets justify, within
// 5%, the benign traffic stays benign, no alert is stamped outside the
// capture's true hour and the steps and the impossible times are counted.
func TestClockCases(t *testing.T) {
	epoch := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name               string
		victims            map[string]float64 // the incidents' victims, and their rates
		stepsBack, invalid uint64
	}{
		{"clock-step-back", map[string]float64{"198.51.100.44/32": 150}, 1, 0},
		{"clock-step-back-monitor", nil, 1, 0},
		{"clock-zero-timestamps", map[string]float64{"198.51.100.42/32": 150}, 0, 7},
		{"clock-far-future", map[string]float64{"198.51.100.43/32": 150}, 0, 1},
	}
	for _, c := range cases {
		for _, workers := range []int{1, 3} {
			log := &alertLog{}
			eng, err := detect.New(detect.DefaultConfig(), log)
			if err != nil {
				t.Fatal(err)
			}
			src := replay{dir: "../../pcaps/" + c.name}.open(t)
			s, err := New(Config{Workers: workers}, []capture.Source{src}, eng)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			src.Close()
			checkMonotonic(t, log.alerts, epoch, epoch.Add(3*time.Minute))
			seen := map[string]bool{}
			for _, a := range log.alerts {
				want, ok := c.victims[a.victim]
				if !ok {
					t.Errorf("%s, %d workers: an alert for %s, which is benign", c.name, workers, a.victim)
					continue
				}
				seen[a.victim] = true
				if a.phase == detect.PhaseEnd && math.Abs(a.peak-want) > want/20 {
					t.Errorf("%s, %d workers: %s peaks at %.1f pps, want %.0f within 5%%", c.name, workers, a.victim, a.peak, want)
				}
			}
			for v := range c.victims {
				if !seen[v] {
					t.Errorf("%s, %d workers: no incident for %s", c.name, workers, v)
				}
			}
			st := s.Stats().Detect
			if st.TimeStepsBack != c.stepsBack || st.TimeInvalid != c.invalid {
				t.Errorf("%s, %d workers: %d steps back, %d impossible times; want %d and %d",
					c.name, workers, st.TimeStepsBack, st.TimeInvalid, c.stepsBack, c.invalid)
			}
		}
	}
}

// TestLiveClockSteps is a live capture whose host clock steps while an
// incident is open, as the stage sees it: the quiet ticker's wall times (an
// injected clock, never the machine's) step back an hour and forward an
// hour while no frame comes, and later frames come stamped an hour back.
// Updates and ends keep coming, and nothing runs backward.
func TestLiveClockSteps(t *testing.T) {
	frames := readFrames(t, "reflection-in") // 205 pps from 2 s to 22 s
	log := &alertLog{}
	eng, err := detect.New(detect.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	s, w, st, c := stageOf(t, eng, true)
	// take hands the stage the frames in [from, to) of the capture's own
	// time, stamped shift from it (a host clock that stepped).
	take := func(from, to, shift time.Duration) {
		c.reset()
		first := frames[0].Timestamp
		for i := range frames {
			if d := frames[i].Timestamp.Sub(first); d >= from && d < to {
				w.frame = frames[i]
				w.frame.Timestamp = w.frame.Timestamp.Add(shift)
				w.keep(c)
			}
		}
		st.take(c)
	}
	wall := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	// quiet has the capture stay quiet for d of wall time, read every
	// quarter second; at step, the wall clock steps by jump.
	quiet := func(d time.Duration, step time.Duration, jump time.Duration) {
		for at := time.Duration(0); at < d; at += 250 * time.Millisecond {
			if at == step {
				wall = wall.Add(jump)
			}
			wall = wall.Add(250 * time.Millisecond)
			before := eng.Now()
			st.idle(wall)
			if eng.Now().Before(before) {
				t.Fatalf("the clock ran back from %v to %v", before, eng.Now())
			}
		}
	}

	take(0, 12*time.Second, 0) // the attack starts
	if len(log.alerts) != 1 || log.alerts[0].phase != detect.PhaseStart {
		t.Fatalf("alerts %+v, want a start", log.alerts)
	}
	// The attack goes on, but the capture is quiet for 70 s of wall time
	// while the wall clock steps back an hour, then forward an hour:
	// the start's update comes, and the end (60 s after the last packet).
	quiet(70*time.Second, 10*time.Second, -time.Hour)
	quiet(10*time.Second, 5*time.Second, time.Hour)
	var phases []detect.Phase
	for _, a := range log.alerts {
		phases = append(phases, a.phase)
	}
	if want := []detect.Phase{detect.PhaseStart, detect.PhaseUpdate, detect.PhaseEnd}; !slices.Equal(phases, want) {
		t.Fatalf("phases %v while quiet, want %v", phases, want)
	}
	// The wall steps moved detection's clock 2 s at most each, and it
	// stays quietGrace behind.
	if d := eng.Now().Sub(frames[0].Timestamp); d < 12*time.Second+74*time.Second || d > 12*time.Second+83*time.Second {
		t.Errorf("detection's clock %v after the first frame, want 86 s to 95 s", d)
	}
	// The host clock stepped back an hour: the rest of the attack comes
	// stamped so. It is a new incident, which starts, has its update and
	// ends once quiet.
	n := len(log.alerts)
	take(12*time.Second, 30*time.Second, -time.Hour)
	quiet(70*time.Second, -1, 0)
	phases = phases[:0]
	for _, a := range log.alerts[n:] {
		phases = append(phases, a.phase)
	}
	if want := []detect.Phase{detect.PhaseStart, detect.PhaseUpdate, detect.PhaseEnd}; !slices.Equal(phases, want) {
		t.Fatalf("phases %v after the host's step, want %v", phases, want)
	}
	for _, a := range []seenAlert{log.alerts[n-1], log.alerts[len(log.alerts)-1]} {
		if math.Abs(a.peak-205) > 205/20 {
			t.Errorf("an incident peaks at %.1f pps, want 205 within 5%%", a.peak)
		}
	}
	checkMonotonic(t, log.alerts, frames[0].Timestamp, frames[0].Timestamp.Add(4*time.Minute))
	if st := s.Stats().Detect; st.TimeStepsBack != 1 {
		t.Errorf("%d steps back, want 1", st.TimeStepsBack)
	}
}

// framesSource gives frames, then io.EOF.
type framesSource struct{ frames []capture.Frame }

func (s *framesSource) ReadFrame(f *capture.Frame) error {
	if len(s.frames) == 0 {
		return io.EOF
	}
	*f, s.frames = s.frames[0], s.frames[1:]
	return nil
}

func (s *framesSource) Close() error { return nil }

// TestClockChunksAsOneWorker: detection's clock fares the same whether it
// sees every frame (one worker) or what the workers' chunks keep of them,
// wherever the chunks begin and end, on a capture whose clock misbehaves
// every way at once: reordering under a second and of one to two seconds,
// steps back, a stray old frame, impossible times and a forward jump.
func TestClockChunksAsOneWorker(t *testing.T) {
	frames := readFrames(t, "clock-zero-timestamps")
	rng := rand.New(rand.NewPCG(13, 13))
	shift := time.Duration(0)
	for i := range frames {
		f := &frames[i]
		if f.Timestamp.Unix() == 0 {
			continue
		}
		switch r := rng.IntN(1000); {
		case r < 2:
			shift -= time.Duration(1+rng.IntN(3600)) * time.Second // a step back
		case r < 3:
			shift += 2 * time.Hour // forward
		case r < 4:
			f.Timestamp = f.Timestamp.Add(-time.Duration(rng.IntN(1e6)) * time.Hour) // a stray
			continue
		case r < 6:
			f.Timestamp = f.Timestamp.Add(400 * 24 * time.Hour) // far ahead
			continue
		case r < 100:
			f.Timestamp = f.Timestamp.Add(-time.Duration(rng.IntN(2e9))) // reordered
		}
		f.Timestamp = f.Timestamp.Add(shift)
	}
	run := func(chunked bool) ([]seenAlert, detect.Stats) {
		log := &alertLog{}
		eng, err := detect.New(detect.DefaultConfig(), log)
		if err != nil {
			t.Fatal(err)
		}
		if !chunked {
			s, err := New(Config{Workers: 1}, []capture.Source{&framesSource{frames}}, eng)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			return log.alerts, s.Stats().Detect
		}
		s, w, st, c := stageOf(t, eng, false)
		for i := 0; i < len(frames); {
			c.reset()
			for end := min(len(frames), i+1+rng.IntN(300)); i < end; i++ {
				w.frame = frames[i]
				w.keep(c)
			}
			st.take(c)
		}
		st.s.flush()
		return log.alerts, s.Stats().Detect
	}
	want, wantStats := run(false)
	if wantStats.TimeStepsBack == 0 || wantStats.TimeInvalid == 0 || len(want) == 0 {
		t.Fatalf("%d steps back, %d impossible times, %d alerts: the capture is not messy enough",
			wantStats.TimeStepsBack, wantStats.TimeInvalid, len(want))
	}
	for range 5 {
		got, stats := run(true)
		if !slices.Equal(got, want) {
			t.Fatalf("chunked: alerts\n%v\nwant\n%v", got, want)
		}
		if stats.TimeStepsBack != wantStats.TimeStepsBack || stats.TimeInvalid != wantStats.TimeInvalid {
			t.Fatalf("chunked: %d steps back, %d impossible times; want %d and %d",
				stats.TimeStepsBack, stats.TimeInvalid, wantStats.TimeStepsBack, wantStats.TimeInvalid)
		}
	}
}

// stageOf returns a sensor of two workers on eng, with the stage, a worker
// and a chunk to hand it frames by hand, as the dealer would.
func stageOf(t *testing.T, eng *detect.Engine, live bool) (*Sensor, *worker, *stage, *chunk) {
	t.Helper()
	s, err := New(Config{Workers: 2, Live: live}, []capture.Source{silentSource{}}, eng)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{dec: capture.NewDecoder(), wants: eng.Wants}
	w.dec.SkipFragments()
	return s, w, &stage{s: s}, <-newChunks(1)
}
