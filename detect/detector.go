// Package detect turns decoded packets into alerts: it tracks flows and
// per-victim state in packet time and reports abuse of echo and the other
// small services as incidents. It is the second stage of the pipeline:
// capture → detect → sinks.
package detect

import (
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Detector consumes decoded packets in packet-time order.
//
// Packet is called once per decoded IP packet with the flow the packet
// belongs to and its direction in it (f is nil when the flow table does not
// track the packet). p and f are borrowed for the call. Flush is called at
// the end of the input with the time of the last packet: it ends every open
// incident. A Detector is used by one goroutine at a time.
type Detector interface {
	Packet(p *capture.Packet, f *Flow, dir Dir)
	Flush(now time.Time)
}

// AlertWriter receives the alerts detectors raise. The *Alert is borrowed
// for the call.
type AlertWriter interface {
	WriteAlert(a *Alert)
}

// RateObserver receives the current rates of every open incident once per
// second of packet time, for reports and plots; alerting does not depend on
// it. It is called from the goroutine that feeds the Engine.
type RateObserver interface {
	IncidentRate(id string, kind Kind, at time.Time, pps, bps float64)
}
