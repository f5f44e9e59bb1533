package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/sensor"
	"github.com/echowatch/echowatch/sinks"
)

// reloader carries a configuration read on SIGHUP to the engine's
// goroutine, which applies it between packets (it is the sensor's
// Reloader): the engine is never touched concurrently with Packet, and
// alerts go to the old outputs or the new ones, never to a mix.
type reloader struct {
	eng    *detect.Engine // set before the sensor runs
	out    *sinks.Fanout  // the engine's, whose set of outputs a reload swaps
	logger *slog.Logger

	hangups sync.Mutex // one hangup at a time
	// mu is held by Apply while it swaps, and by hangup while it takes
	// back a config not applied yet: with no config waiting, the outputs
	// in use cannot change while hangup opens the new ones.
	mu    sync.Mutex
	next  atomic.Pointer[pendingConfig] // the latest config not yet applied
	ready chan struct{}                 // signalled when next is set
}

// pendingConfig is a configuration ready to apply.
type pendingConfig struct {
	detect  detect.Config
	outputs *sinks.Plan
}

var _ sensor.Reloader = (*reloader)(nil)

func newReloader(out *sinks.Fanout, logger *slog.Logger) *reloader {
	return &reloader{out: out, logger: logger, ready: make(chan struct{}, 1)}
}

// hangup reads the configuration file again, as the command line read it
// at the start (its flags still win), opens the outputs it adds and hands
// them with the detection settings to the engine's goroutine. A file that
// cannot be read, or an output that cannot be opened, refuses the whole
// configuration. Any goroutine may call it; the settings other than
// detection's and the outputs keep the values they started with.
func (r *reloader) hangup(ctx context.Context, started config) {
	r.hangups.Lock()
	defer r.hangups.Unlock()
	cfg, err := started.reread()
	var oo sinks.Options
	if err == nil {
		oo, err = outputOptionsFor(cfg, started.live())
	}
	if err != nil {
		r.logger.Error("configuration refused: " + err.Error())
		return
	}
	if fixed := restartOnly(started, cfg); len(fixed) > 0 {
		r.logger.Warn("not reloaded: restart to change " + strings.Join(fixed, ", "))
	}
	cfg.keepSizes(started)
	// This config supersedes one still waiting; with none waiting, the
	// outputs stay as they are while new ones are opened.
	r.mu.Lock()
	prev := r.next.Swap(nil)
	r.mu.Unlock()
	plan, err := r.out.Prepare(ctx, cfg.Outputs, oo)
	if err != nil {
		err = outputUsage(err)
		r.logger.Error("configuration refused: " + err.Error())
		if prev != nil {
			r.handOver(prev) // an earlier good file still counts
		}
		return
	}
	if prev != nil {
		r.out.Discard(prev.outputs)
	}
	r.handOver(&pendingConfig{detect: cfg.Config, outputs: plan})
}

func (r *reloader) handOver(next *pendingConfig) {
	r.next.Store(next)
	select {
	case r.ready <- struct{}{}:
	default: // already signalled; the engine takes the latest
	}
}

// Due is signalled when a config waits.
func (r *reloader) Due() <-chan struct{} { return r.ready }

// Apply reconfigures the engine and swaps the outputs with the config
// waiting, if any; when detection refuses the config, the outputs stay as
// they were. It must run on the engine's goroutine, between packets.
func (r *reloader) Apply() {
	if r.next.Load() == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.next.Swap(nil)
	if next == nil {
		return
	}
	if err := r.eng.Reconfigure(next.detect); err != nil {
		r.out.Discard(next.outputs)
		r.logger.Error("configuration refused: " + err.Error())
		return
	}
	r.out.Swap(next.outputs, func(added, removed []string) {
		var changed []any
		if len(added) > 0 {
			changed = append(changed, "outputs_added", strings.Join(added, " "))
		}
		if len(removed) > 0 {
			changed = append(changed, "outputs_removed", strings.Join(removed, " "))
		}
		r.logger.Info("configuration reloaded", changed...)
	})
}

// keepSizes gives c the memory budget and the table sizes of the run as it
// started: tables are made once, and a reload that would size them
// otherwise (a new max_memory, a max_* changed) applies the rest.
func (c *config) keepSizes(started config) {
	c.MaxMemory, c.MaxFlows, c.logIncidents = started.MaxMemory, started.MaxFlows, started.logIncidents
	c.Reflection.MaxVictims = started.Reflection.MaxVictims
	c.Loop.MaxPairs = started.Loop.MaxPairs
	c.SpoofedFlood.MaxTargets = started.SpoofedFlood.MaxTargets
	c.Scan.MaxScanners = started.Scan.MaxScanners
	c.Exposed.MaxFindings = started.Exposed.MaxFindings
}

// restartOnly names the settings that differ between the config a run
// started with and a new one, and that a reload does not change: what
// opened the capture, how frames are decoded, the evidence files, the end-of-run files, the
// metrics listener and the flow table's size.
func restartOnly(started, n config) []string {
	var names []string
	for _, f := range []struct {
		name     string
		old, new any
	}{
		{"read", strings.Join(started.Read, "\x00"), strings.Join(n.Read, "\x00")},
		{"interface", started.Interface, n.Interface},
		{"capture", started.Capture, n.Capture},
		{"bpf", started.BPF, n.BPF},
		{"snaplen", started.Snaplen, n.Snaplen},
		{"promiscuous", started.Promiscuous, n.Promiscuous},
		{"workers", started.Workers, n.Workers},
		// The decoders and the dedup tables are made once, per worker.
		{"vxlan_ports", fmt.Sprint(started.VXLANPorts), fmt.Sprint(n.VXLANPorts)},
		{"tenant", started.Tenant, n.Tenant},
		{"dedup", started.Dedup, n.Dedup},
		// The sizes as given, not as max_memory made them.
		{"max_memory", started.MaxMemory, n.MaxMemory},
		{"max_flows", started.given.flows, n.given.flows},
		{"reflection.max_victims", started.given.victims, n.given.victims},
		{"loop.max_pairs", started.given.pairs, n.given.pairs},
		{"spoofed_flood.max_targets", started.given.targets, n.given.targets},
		{"scan.max_scanners", started.given.scanners, n.given.scanners},
		{"exposed.max_findings", started.given.findings, n.given.findings},
		{"user", started.User, n.User},
		{"stats", started.Stats, n.Stats},
		{"stats_interval", started.StatsInterval, n.StatsInterval},
		{"metrics_listen", started.MetricsListen, n.MetricsListen},
		{"summary", started.Summary, n.Summary},
		{"report", started.Report, n.Report},
		{"evidence", started.Evidence, n.Evidence},
	} {
		if f.old != f.new {
			names = append(names, f.name)
		}
	}
	return names
}
