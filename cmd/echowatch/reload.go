package main

import (
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/echowatch/echowatch/detect"
)

// reloader carries a detection config read on SIGHUP to the engine's
// goroutine, which applies it between packets: the engine is never touched
// concurrently with Packet.
type reloader struct {
	eng    *detect.Engine // set before the pipeline runs
	logger *slog.Logger
	next   atomic.Pointer[detect.Config] // the latest config not yet applied
	ready  chan struct{}                 // signalled when next is set
}

func newReloader(logger *slog.Logger) *reloader {
	return &reloader{logger: logger, ready: make(chan struct{}, 1)}
}

// hangup reads the configuration file again, as the command line read it
// at the start (its flags still win), and hands the detection settings to
// the engine's goroutine. Any goroutine may call it. The other settings
// keep the values they started with.
func (r *reloader) hangup(started config) {
	cfg, err := started.reread()
	if err != nil {
		r.logger.Error("configuration refused: " + err.Error())
		return
	}
	if !slices.Equal(cfg.Outputs, started.Outputs) || cfg.OutputOptions != started.OutputOptions {
		r.logger.Warn("outputs are not reloaded: restart to change them")
	}
	r.next.Store(&cfg.Config)
	select {
	case r.ready <- struct{}{}:
	default: // already signalled; the engine takes the latest
	}
}

// due is signalled when a config waits; nil when r is.
func (r *reloader) due() <-chan struct{} {
	if r == nil {
		return nil
	}
	return r.ready
}

// apply reconfigures the engine with the config waiting, if any. It must
// run on the engine's goroutine; with nothing waiting it costs one atomic
// load, so it may run for every frame.
func (r *reloader) apply() {
	if r == nil || r.next.Load() == nil {
		return
	}
	cfg := r.next.Swap(nil)
	if cfg == nil {
		return
	}
	if err := r.eng.Reconfigure(*cfg); err != nil {
		r.logger.Error("configuration refused: " + err.Error())
		return
	}
	r.logger.Info("configuration reloaded")
}
