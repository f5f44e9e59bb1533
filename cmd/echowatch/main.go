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
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/capture/live"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/report"
	"github.com/echowatch/echowatch/internal/sensor"
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
	defer limitMemory(cfg.budget())()
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
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	// /dev/null is a character device too, and no terminal.
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

// openSources opens what cfg says to read: capture files, or a live
// interface (one source per worker).
func openSources(cfg config, stdin io.Reader) ([]capture.Source, error) {
	if cfg.Telemetry.on() {
		t, err := openTelemetry(cfg, stdin)
		if err != nil {
			return nil, err
		}
		if cfg.Interface == "" {
			return []capture.Source{t}, nil
		}
		// Beside -i: the interface's sources, and the collector as one
		// more, each read by a worker of its own.
		cfg.Telemetry = telemetryOptions{}
		srcs, err := openSources(cfg, stdin)
		if err != nil {
			t.Close()
			return nil, err
		}
		return append(srcs, t), nil
	}
	if len(cfg.Read) > 0 {
		src, err := openFiles(cfg.Read, stdin)
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
	var srcs []capture.Source
	err := withNetRaw(func() error {
		if cfg.Capture == "afpacket" {
			socks, err := live.OpenAFPacket(lc, cfg.Workers)
			for _, s := range socks {
				srcs = append(srcs, s)
			}
			return err
		}
		h, err := live.OpenPcap(lc)
		if err == nil {
			srcs = append(srcs, h)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return srcs, nil
}

// openFiles opens the capture files to read: one as a FileSource, which
// several workers can split; several as one timeline merged in time order.
func openFiles(paths []string, stdin io.Reader) (capture.Source, error) {
	var src capture.Source
	var err error
	if len(paths) == 1 {
		src, err = capture.OpenFiles(paths, stdin)
	} else {
		src, err = capture.MergeFiles(paths, stdin)
	}
	if err != nil {
		return nil, err // not src: a nil pointer in an interface
	}
	return src, nil
}

// sense wires the sensor (sources → workers → detection → outputs) and
// runs it.
func sense(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer, logger *slog.Logger) error {
	live := cfg.live()
	oo, err := outputOptionsFor(cfg, live)
	if err != nil {
		return err
	}
	// What needs root is opened first: the capture, and the metrics port
	// (one below 1024 may be asked for). Sources may be closed twice and
	// from any goroutine: here at the end, and by the sensor on a signal
	// to stop a blocked read.
	srcs, err := openSources(cfg, stdin)
	if err != nil {
		return err
	}
	defer closeAll(srcs)
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = listenMetrics(cfg.MetricsListen); err != nil {
			return err
		}
		defer metricsLn.Close() // on early returns; serving closes it too
	}
	if cfg.User != "" {
		uid, gid, err := dropPrivileges(cfg.User)
		if err != nil {
			return err
		}
		logger.Info("running as", "user", cfg.User, "uid", uid, "gid", gid)
	}
	// Whatever the sensor writes is opened, and checked, from here on as
	// the user it runs as: a file it could not write after the drop is an
	// error now, not an output down for the whole run.
	err = checkCreatable(cfg.Summary, cfg.Report)
	var out *sinks.Fanout
	if err == nil {
		out, err = openOutputs(ctx, cfg.Outputs, oo, stdout, logger)
	}
	if err != nil {
		return asUser(err, cfg.User)
	}
	defer out.Close() // on early returns; the end of the run closes it first
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone := make(chan struct{})
	defer func() { signal.Stop(hup); close(hupDone) }()
	var reload *reloader
	if cfg.reread != nil {
		reload = newReloader(out, logger)
	}
	go func() {
		for {
			select {
			case <-hup:
				out.Reopen() // logrotate moved the file outputs
				if reload != nil {
					reload.hangup(ctx, cfg)
				}
			case <-hupDone:
				return
			}
		}
	}()
	scfg, err := cfg.sensorConfig()
	if err != nil {
		return err
	}
	// The incidents are kept for the summary and the report at the end.
	stderrTTY := isTerminal(stderr)
	var incidents *report.Log
	if cfg.Summary != "" || cfg.Report != "" || stderrTTY {
		incidents = report.NewLog(cfg.logIncidents)
		scfg.Observer = incidents
	}
	engine, err := detect.New(cfg.Config, out)
	if err != nil {
		return usagef("%v", err)
	}
	if reload != nil {
		reload.eng = engine
	}
	var mets *metrics
	if metricsLn != nil {
		mets = newMetrics(out, logger)
		mets.serve(metricsLn)
		defer mets.Close()
	}
	var evidence *sinks.Evidence
	if cfg.Evidence.Dir != "" {
		// Opened as the user the sensor runs as: it writes the files.
		o := cfg.Evidence
		ev, err := sinks.NewEvidence(sinks.EvidenceConfig{Dir: o.Dir, Packets: o.Packets, Snaplen: o.Snaplen,
			MaxOpen: o.MaxOpen, MaxFiles: o.MaxFiles, MaxBytes: int64(o.MaxBytes)},
			logger)
		if err != nil {
			return err
		}
		defer ev.Close() // on early returns; after the run, below
		engine.KeepEvidence(ev)
		evidence = ev
	}
	// A signal stops the run (the sensor closes the sources) and is logged
	// when it comes; one that comes once the run is over is not.
	logged := make(chan struct{})
	stopLog := context.AfterFunc(ctx, func() {
		logger.Info("stopping on signal")
		close(logged)
	})
	defer stopLog()
	if live {
		logger.Info("capture started", "interface", cfg.Interface, "method", cfg.Capture, "workers", len(srcs))
	}

	stats := &statsTicker{cfg: cfg, started: time.Now(), every: statsEvery(cfg), out: out, mets: mets, evidence: evidence,
		blind: newBlindSpots(stderr), written: time.Now()}
	if stats.every > 0 {
		scfg.Ticker, scfg.TickEvery = stats, stats.every
	}
	if reload != nil {
		scfg.Reloader = reload
	}
	if live {
		// The ends of the open incidents come in one burst as the
		// capture stops: let it wait for room, as a file's alerts do.
		scfg.Draining = func() { out.Drain(cfg.OutputOptions.FlushTimeout) }
	}
	sens, err := sensor.New(scfg, srcs, engine)
	if err != nil {
		return err
	}
	stats.sens = sens
	// A progress line on a terminal, unless alerts go to the same one.
	stopProgress := func() {}
	if !live && stderrTTY && !isTerminal(stdout) {
		if stats, ok := fileStatsOf(srcs[0]); ok {
			prog := newProgress(stderr, fileProgress(stats), incidents.Count)
			prog.start()
			defer prog.stop()
			stopProgress = prog.stop
		}
	}
	runErr := sens.Run(ctx)
	if !stopLog() {
		<-logged // the line is out before anything the run's end writes
	}
	if evidence != nil {
		// The run ended every incident, and so its file; what is left
		// open is flushed before the final counters are taken.
		if err := evidence.Close(); err != nil {
			logger.Warn("evidence files", "err", err)
		}
	}
	stopProgress() // before the warnings and the summary
	lost := reportInputs(stderr, sens.Warnings(), srcs[0])
	runErr = errors.Join(runErr, lost)
	final := stats.snapshot()
	if cfg.Stats {
		stats.write(final)
	}
	stats.warn(final)
	if msg := heldBack(final.Detect); msg != "" {
		fmt.Fprintf(stderr, "echowatch: warning: %s\n", msg)
	}
	if cfg.metricsRan != nil && mets != nil {
		cfg.metricsRan(mets.addr())
	}
	if err := out.Close(); err != nil {
		// Offline, everything detected must have been delivered; a live
		// sensor reports what it lost and stops as asked.
		if live {
			logger.Warn("outputs lost events", "err", err)
		} else {
			runErr = errors.Join(runErr, err)
		}
	}
	if incidents != nil {
		meta := report.Meta{Captures: cfg.Read, Start: captureStart(srcs[0]), End: final.Timestamp,
			Sensor: cfg.SensorName, Version: version, Generated: time.Now()}
		if live {
			meta.Captures = []string{cfg.Interface}
		}
		if n := incidents.Dropped(); n > 0 {
			logger.Warn("summary incomplete: incidents over its bound were not kept", "dropped", n)
		}
		var table io.Writer
		if stderrTTY {
			table = stderr
		}
		runErr = errors.Join(runErr, writeForensics(incidents, cfg.Summary, cfg.Report, meta, table))
	}
	return runErr
}

// asUser says which user an error at start-up happened as, after the
// privileges were dropped. A usage error is one no more: the settings were
// valid as root (a CA file that root may read), the user cannot use them.
func asUser(err error, user string) error {
	if user == "" {
		return err
	}
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		return fmt.Errorf("%s (running as user %s)", ue.msg, user)
	}
	return fmt.Errorf("%w (running as user %s)", err, user)
}

// heldBack says what max_alerts_per_second held back over the run, by
// kind, or "" when nothing was.
func heldBack(s detect.Stats) string {
	if s.Suppressed == 0 {
		return ""
	}
	var by []string
	for _, k := range s.Kinds {
		if k.Suppressed > 0 {
			by = append(by, fmt.Sprintf("%s %d", k.Name, k.Suppressed))
		}
	}
	alerts := "alerts"
	if s.Suppressed == 1 {
		alerts = "alert"
	}
	return fmt.Sprintf("max_alerts_per_second held back %d %s (%s); the stats event counts them by kind",
		s.Suppressed, alerts, strings.Join(by, ", "))
}

// sensorConfig is what the settings ask of the sensor's loop.
func (c *config) sensorConfig() (sensor.Config, error) {
	dc, err := c.decoderConfig()
	if err != nil {
		return sensor.Config{}, err
	}
	sc := sensor.Config{Workers: c.Workers, Live: c.live(), Decoder: dc, Dedup: c.Dedup, MaxFlows: c.MaxFlows}
	if c.Evidence.Dir != "" {
		sc.EvidenceSnaplen = c.Evidence.Snaplen
	}
	if c.Telemetry.on() {
		// Telemetry is decoded on one goroutine: a sample costs little
		// next to a captured frame, and there are fewer. Beside -i, it is
		// one more source: AF_PACKET's sockets and it, or libpcap's one
		// handle and it, each read by a worker of its own.
		sc.Workers = 1
		if c.Interface != "" {
			sc.Workers = 2
			if c.Capture == "afpacket" {
				sc.Workers = c.Workers + 1
			}
		}
	}
	return sc, nil
}

// live reports whether the input is live: an interface or a collector.
func (c *config) live() bool {
	return c.Interface != "" || c.Telemetry.SFlow != "" || c.Telemetry.NetFlow != ""
}

func closeAll(srcs []capture.Source) {
	for _, s := range srcs {
		s.Close()
	}
}
