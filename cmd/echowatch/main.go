// Command echowatch is a passive sensor that detects abuse of the echo
// protocol and its siblings in capture files or on a live interface, and
// reports it as Suricata-compatible EVE alerts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/capture/live"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, done, err := parseArgs(args, stdout, isTerminal(stdout))
	if done {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "echowatch: %v\nTry 'echowatch --help' for more information.\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		// The service manager or terminal stamps the time.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("component", "echowatch")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sense(ctx, cfg, stdin, stdout, stderr, logger); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "echowatch: %v\nTry 'echowatch --help' for more information.\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "echowatch: %v\n", err)
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// alertFanout hands each alert to every output. It logs an output's
// failure when its state changes, not once per alert.
type alertFanout struct {
	outs    []sinks.Sink
	names   []string
	failing []bool
	logger  *slog.Logger
	emitted uint64
	failed  uint64
}

var _ detect.AlertWriter = (*alertFanout)(nil)

func (a *alertFanout) WriteAlert(al *detect.Alert) { a.write(al) }

func (a *alertFanout) write(ev sinks.Event) {
	a.emitted++
	for i, o := range a.outs {
		err := o.Write(ev)
		switch {
		case err != nil && !a.failing[i]:
			a.failing[i] = true
			a.logger.Error("output failing", "output", a.names[i], "err", err)
		case err == nil && a.failing[i]:
			a.failing[i] = false
			a.logger.Info("output recovered", "output", a.names[i])
		}
		if err != nil {
			a.failed++
		}
	}
}

func (a *alertFanout) close() error {
	var errs []error
	for _, o := range a.outs {
		errs = append(errs, o.Close())
	}
	if a.failed > 0 {
		errs = append(errs, fmt.Errorf("%d alert deliveries failed", a.failed))
	}
	return errors.Join(errs...)
}

// openSources opens what cfg says to read: capture files, or a live
// interface (one source per worker).
func openSources(cfg config, stdin io.Reader) ([]capture.Source, error) {
	if len(cfg.Read) > 0 {
		src, err := capture.OpenFiles(cfg.Read, stdin)
		if err != nil {
			return nil, err
		}
		if cfg.BPF == "" {
			return []capture.Source{src}, nil
		}
		flt, err := live.CompileFilter(cfg.BPF)
		if err != nil {
			src.Close()
			return nil, usagef("--bpf: %v", err)
		}
		return []capture.Source{capture.Filtered(src, flt)}, nil
	}
	lc := live.Config{Interface: cfg.Interface, Snaplen: cfg.Snaplen, Promisc: cfg.Promiscuous, BPF: cfg.BPF}
	if cfg.Capture == "afpacket" {
		socks, err := live.OpenAFPacket(lc, cfg.Workers)
		if err != nil {
			return nil, err
		}
		srcs := make([]capture.Source, len(socks))
		for i, s := range socks {
			srcs[i] = s
		}
		return srcs, nil
	}
	h, err := live.OpenPcap(lc)
	if err != nil {
		return nil, err
	}
	return []capture.Source{h}, nil
}

// sense runs the pipeline: sources → workers → detection → outputs.
func sense(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer, logger *slog.Logger) error {
	format, err := sinks.ParseFormat(cfg.Format)
	if err != nil {
		return usagef("--format: %v", err)
	}
	out := &alertFanout{logger: logger}
	for _, name := range cfg.Outputs {
		out.outs = append(out.outs, sinks.NewStream("stdout", stdout, format))
		out.names = append(out.names, name)
		out.failing = append(out.failing, false)
	}
	engine, err := detect.New(cfg.Config, out)
	if err != nil {
		return usagef("%v", err)
	}
	srcs, err := openSources(cfg, stdin)
	if err != nil {
		return err
	}
	live := cfg.Interface != ""
	var closeOnce sync.Once
	closeSources := func() {
		closeOnce.Do(func() {
			for _, s := range srcs {
				s.Close()
			}
		})
	}
	defer closeSources()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-stopped: // the run was over before the signal came
				return
			default:
			}
			logger.Info("stopping on signal")
			closeSources()
		case <-stopped:
		}
	}()
	defer close(stopped)
	if live {
		logger.Info("capture started", "interface", cfg.Interface, "method", cfg.Capture, "workers", len(srcs))
	}

	workers := make([]*worker, len(srcs))
	flowPorts := cfg.FlowPorts()
	for i, src := range srcs {
		flows, err := detect.NewLRUFlows(detect.FlowConfig{MaxFlows: cfg.MaxFlows / len(srcs), Ports: flowPorts})
		if err != nil {
			return err
		}
		workers[i] = &worker{src: src, dec: capture.NewDecoder(), flows: flows}
	}
	emitStats := func() {
		ev := collectStats(cfg, workers, srcs, engine)
		out.write(ev)
	}

	var runErr error
	if len(workers) == 1 {
		w := workers[0]
		w.next = engine
		if live {
			w.tick = emitStats
			w.idle = idleClock(w, engine)
			stopTicker := startStatsTicker(cfg.StatsInterval, cfg.Stats, w)
			defer stopTicker()
		}
		runErr = w.run()
		engine.Flush(w.last)
	} else {
		runErr = runMany(workers, engine, cfg, emitStats)
	}
	if runErr != nil && errors.Is(runErr, capture.ErrTruncated) {
		fmt.Fprintf(stderr, "echowatch: warning: %v; the alerts up to that point were reported\n", runErr)
		runErr = nil
	}
	if ctx.Err() != nil && runErr != nil {
		// Reads interrupted by a signal are a normal stop.
		runErr = nil
	}
	if cfg.Stats {
		emitStats()
	}
	return errors.Join(runErr, out.close())
}

// startStatsTicker asks w for a stats event every interval while live.
func startStatsTicker(interval time.Duration, enabled bool, ws ...*worker) (stop func()) {
	if !enabled {
		return func() {}
	}
	t := time.NewTicker(interval)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				for _, w := range ws {
					w.statsDue.Store(true)
				}
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

func collectStats(cfg config, workers []*worker, srcs []capture.Source, engine *detect.Engine) *statsEvent {
	ev := &statsEvent{Host: cfg.SensorName, Detect: engine.Stats()}
	for _, w := range workers {
		ev.add(w.stats())
	}
	for _, s := range srcs {
		if ss, ok := s.(capture.StatsSource); ok {
			if st, err := ss.Stats(); err == nil {
				ev.addSource(st)
			}
		}
	}
	return ev
}

// idleClock returns the worker's idle hook for live capture: while no
// packet comes, detection's clock moves on from the last packet's time by
// the wall time that has passed, so incidents end when an attack stops
// rather than at the next packet. Offline runs never call it.
func idleClock(w *worker, engine *detect.Engine) func() {
	var seen, quietSince time.Time
	return func() {
		now := time.Now()
		if !w.last.Equal(seen) {
			seen, quietSince = w.last, now
		}
		if !seen.IsZero() {
			engine.Tick(seen.Add(now.Sub(quietSince)))
		}
	}
}
