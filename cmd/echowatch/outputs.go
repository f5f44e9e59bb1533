package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/echowatch/echowatch/sinks"
)

// validateOutputs checks the --output URLs and their options without
// touching the network: a mistake is a usage error.
func validateOutputs(urls []string, o sinks.Options) error {
	for _, raw := range urls {
		if _, err := sinks.ParseOutput(raw, o, io.Discard); err != nil {
			return outputUsage(err)
		}
	}
	return nil
}

// outputUsage makes a mistake in an output's URL or options a usage
// error that names the flag.
func outputUsage(err error) error {
	if ue := (*sinks.URLError)(nil); errors.As(err, &ue) {
		return usagef("--output %v", ue)
	}
	return err
}

// outputOptionsFor returns the options of cfg's outputs, with the settings
// main adds to the file's. live is whether the run captures live, as it
// started: a reload does not change it.
func outputOptionsFor(cfg config, live bool) (sinks.Options, error) {
	format, err := sinks.ParseFormat(cfg.Format)
	if err != nil {
		return sinks.Options{}, usagef("--format: %v", err)
	}
	o := cfg.OutputOptions
	o.Format, o.SensorName, o.Version = format, cfg.SensorName, version
	// Reading files, the outputs may go as slowly as their destinations:
	// an event waits for room up to the flush timeout.
	o.Wait = o.FlushTimeout
	if live {
		o.Wait, o.WaitBudget = liveWait, liveWaitBudget
	}
	return o, nil
}

// A live sensor waits for room in an output's queue only while its
// destination keeps up, and at most liveWaitBudget in a second for all
// its outputs together: enough for a burst of alerts larger than a queue
// to reach its destination, never so long that the capture falls behind
// (the kernel's buffer holds far more).
const (
	liveWait       = 50 * time.Millisecond
	liveWaitBudget = 100 * time.Millisecond
)

// openOutputs opens and starts the outputs, as the user the sensor runs
// as: it reads the files their options name, and creates theirs.
func openOutputs(ctx context.Context, urls []string, o sinks.Options, stdout io.Writer, logger *slog.Logger) (*sinks.Fanout, error) {
	outs, err := sinks.OpenFanout(ctx, urls, o, stdout, logger)
	return outs, outputUsage(err)
}
