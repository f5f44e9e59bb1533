package sensor

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// TestNewRefuses: what cannot run is refused by New, with an error that
// names the sensor and the setting.
func TestNewRefuses(t *testing.T) {
	eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
	if err != nil {
		t.Fatal(err)
	}
	one := []capture.Source{silentSource{}}
	two := []capture.Source{silentSource{}, silentSource{}}
	for _, c := range []struct {
		cfg  Config
		srcs []capture.Source
		eng  *detect.Engine
		want string
	}{
		{Config{Workers: 1}, one, nil, "sensor: no engine"},
		{Config{Workers: 0}, one, eng, "sensor: 0 workers"},
		{Config{Workers: 1}, nil, eng, "sensor: no source"},
		{Config{Workers: 3}, two, eng, "sensor: 2 sources for 3 workers"},
		{Config{Workers: 1, Ticker: tickFunc(func() {})}, one, eng, "sensor: a ticker every 0s"},
		{Config{Workers: 1, Dedup: -time.Second}, one, eng, "none may be negative"},
		{Config{Workers: 2, Dedup: time.Hour}, one, eng, "sensor: capture: dedup window"},
		{Config{Workers: 1, Decoder: capture.DecoderConfig{VXLANPorts: []uint16{0}}}, one, eng, "sensor: capture:"},
	} {
		s, err := New(c.cfg, c.srcs, c.eng)
		if s != nil || err == nil || !strings.HasPrefix(err.Error(), "sensor: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v, %d sources): %v, want %q", c.cfg, len(c.srcs), err, c.want)
		}
	}
}

// TestRunWarnsAndFails: a capture file cut short is a warning, after which
// the reading went on, and Run succeeds; a source that fails makes Run
// fail with its error; a sensor runs once. With one worker and with three
// alike.
func TestRunWarnsAndFails(t *testing.T) {
	data, err := os.ReadFile("../../pcaps/reflection-in/capture.pcap")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, data[:len(data)-7], 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, workers := range goldenWorkers {
		eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
		if err != nil {
			t.Fatal(err)
		}
		src, err := capture.OpenFiles([]string{cut}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Workers: workers}, []capture.Source{src}, eng)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); err != nil {
			t.Errorf("%d workers: a file cut short fails the run: %v", workers, err)
		}
		if ws := s.Warnings(); len(ws) != 1 || !errors.Is(ws[0], capture.ErrTruncated) || !strings.Contains(ws[0].Error(), "cut.pcap") {
			t.Errorf("%d workers: warnings %v, want the cut", workers, ws)
		}
		if st := s.Stats(); st.Decoder.Frames == 0 || eng.Stats().Alerts == 0 {
			t.Errorf("%d workers: %d frames read, %d alerts before the cut", workers, st.Decoder.Frames, eng.Stats().Alerts)
		}
		src.Close()

		s, err = New(Config{Workers: workers}, []capture.Source{&failing{n: 100, err: boom}}, eng)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); !errors.Is(err, boom) || len(s.Warnings()) > 0 {
			t.Errorf("%d workers: a failing source gives %v, warnings %v; want %v", workers, err, s.Warnings(), boom)
		}
		if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("%d workers: a second run gives %v", workers, err)
		}
	}
}

// failing gives n empty frames, then err.
type failing struct {
	n   int
	err error
}

func (f *failing) ReadFrame(fr *capture.Frame) error {
	if f.n == 0 {
		return f.err
	}
	f.n--
	*fr = capture.Frame{Data: make([]byte, 60), Timestamp: time.Unix(1e9, 0)}
	return nil
}

func (f *failing) Close() error { return nil }

// TestStatsAnyWorkers: the counters of a run add up to the same frames
// and latest frame time with any number of workers, and each worker's
// share adds up to the whole.
func TestStatsAnyWorkers(t *testing.T) {
	frames := readFrames(t, "fragmented-reflection")
	var last time.Time
	for _, f := range frames {
		if f.Timestamp.After(last) {
			last = f.Timestamp
		}
	}
	for _, workers := range []int{1, 2, 3} {
		eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
		if err != nil {
			t.Fatal(err)
		}
		src, err := capture.OpenFiles([]string{"../../pcaps/fragmented-reflection/capture.pcap"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		s, err := New(Config{Workers: workers}, []capture.Source{src}, eng)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		var shares uint64
		for _, w := range st.Workers {
			shares += w.Frames
		}
		if st.Decoder.Frames != uint64(len(frames)) || shares != st.Decoder.Frames || len(st.Workers) != workers ||
			!st.Last.Equal(last) || st.Decoder.Fragments == 0 || st.Decoder.FragmentsMatched == 0 || st.Flow.Created == 0 {
			t.Errorf("%d workers: %d frames (workers' shares %d, %d workers), latest %v, fragments %d matched %d, flows %d; want %d frames, latest %v",
				workers, st.Decoder.Frames, shares, len(st.Workers), st.Last, st.Decoder.Fragments, st.Decoder.FragmentsMatched, st.Flow.Created,
				len(frames), last)
		}
	}
}

// TestHooksAndStop runs a live sensor on captures that go on until they
// are closed, with one worker, with three fed by a dealer, and with three
// reading a source each (AF_PACKET's shape): the Ticker ticks, a reload
// due is applied, both on the engine's goroutine (the race detector
// watches the engine, which both touch), and cancelling the context ends
// the run, which closes the sources and returns no error.
func TestHooksAndStop(t *testing.T) {
	frames := readFrames(t, "reflection-in")
	for _, c := range []struct {
		name             string
		workers, sources int
	}{{"one worker", 1, 1}, {"dealer", 3, 1}, {"fanout", 3, 3}} {
		t.Run(c.name, func(t *testing.T) {
			eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
			if err != nil {
				t.Fatal(err)
			}
			var srcs []capture.Source
			var live []*endless
			for range c.sources {
				e := &endless{frames: frames}
				srcs, live = append(srcs, e), append(live, e)
			}
			var ticks, applied atomic.Int32
			var s *Sensor
			r := &reload{due: make(chan struct{}, 1), apply: func() {
				cfg := detect.DefaultConfig()
				cfg.HomeNet = []string{"198.51.100.0/24"}
				if err := eng.Reconfigure(cfg); err != nil {
					t.Error(err)
				}
				applied.Add(1)
			}}
			s, err = New(Config{Workers: c.workers, Live: true, TickEvery: 5 * time.Millisecond,
				Ticker: tickFunc(func() {
					if s.Stats().Detect.Alerts >= 0 {
						ticks.Add(1)
					}
				}),
				Reloader: r}, srcs, eng)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			r.due <- struct{}{}
			deadline := time.Now().Add(10 * time.Second)
			for (applied.Load() == 0 || ticks.Load() < 3) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("stopped: %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the run goes on after its context is done")
			}
			if applied.Load() != 1 || ticks.Load() < 3 {
				t.Errorf("%d reloads applied, %d ticks; want 1 and at least 3", applied.Load(), ticks.Load())
			}
			for i, e := range live {
				if !e.closed.Load() {
					t.Errorf("source %d not closed", i)
				}
			}
			if st := s.Stats(); st.Decoder.Frames == 0 {
				t.Error("no frame read")
			}
		})
	}
}

// tickFunc is a function as a Ticker.
type tickFunc func()

func (f tickFunc) Tick() { f() }

// reload is a Reloader.
type reload struct {
	due   chan struct{}
	apply func()
}

func (r *reload) Due() <-chan struct{} { return r.due }
func (r *reload) Apply()               { r.apply() }

// endless is a live capture that gives frames over and over, a moment
// apart in packet time, with a read timeout now and then, until it is
// closed, from any goroutine.
type endless struct {
	frames []capture.Frame
	i      int
	at     time.Time
	closed atomic.Bool
}

func (e *endless) ReadFrame(f *capture.Frame) error {
	if e.closed.Load() {
		return io.EOF
	}
	if e.i++; e.i%64 == 0 {
		time.Sleep(time.Millisecond)
		return capture.ErrTimeout
	}
	*f = e.frames[e.i%len(e.frames)]
	if e.at.IsZero() {
		e.at = f.Timestamp
	}
	e.at = e.at.Add(100 * time.Microsecond)
	f.Timestamp = e.at
	return nil
}

func (e *endless) Close() error {
	e.closed.Store(true)
	return nil
}
