// Package detect turns decoded packets into alerts: it tracks flows and
// per-victim state in packet time and reports abuse of echo and the other
// small services as incidents. It is the second stage of the pipeline:
// capture → detect → sinks.
package detect

import (
	"net/netip"
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

// detector is one kind of detection behind the Engine: its ports, its
// packet handler, its tables and how its incidents render. The Engine
// holds a list of them, built in New, and calls them on its goroutine only.
type detector interface {
	// info describes the detector's incidents: their kind and how alerts
	// render them.
	info() kindInfo
	// setup makes the detector's tables, sized as sizes says (New sizes
	// every table from max_memory first), and keeps r to raise incidents
	// with. New calls it once, before configure.
	setup(sizes *Config, r *reporter) error
	// configure puts c, compiled as s, in force; the detector may keep
	// pointers into c. New and Reconfigure call it.
	configure(c *Config, s *settings)
	// wants returns the packets the detector wants, by their ports. The
	// Engine asks after each configure and routes only those to packet.
	wants() wanted
	// packet handles one TCP or UDP packet that it wants.
	packet(pv *view)
	// tables appends the stats of the detector's bounded tables to ts.
	tables(ts []TableStats) []TableStats
}

// wanted is the TCP and UDP packets a detector wants, by their ports:
// those from a port of from or to a port of to (a nil set holds none);
// with both, only those from a port of from to a port of to; with every,
// all of them. UDP between two service ports is a loop's: only the
// detectors that say loops get it.
type wanted struct {
	from, to *PortSet
	both     bool
	every    bool
	loops    bool
}

// kindInfo is what an alert knows of its kind: its name and how its own
// members render. Its methods read only the Alert, so that any goroutine
// may render one.
type kindInfo interface {
	kind() Kind
	name() string // as alerts spell it ("spoofed_flood")
	// key returns what the incident is about, before the tenant (see
	// Alert.Key).
	key(a *Alert) string
	// sides returns the attacker's and the victim's end of the alert, as
	// Suricata's alert.source and alert.target say them.
	sides(a *Alert) (source, target netip.AddrPort)
	// appendEVE appends the kind's members of the EVE incident object, each
	// after a comma.
	appendEVE(b []byte, a *Alert) []byte
	// appendText appends the kind's words of the text line, after the
	// signature and before the direction.
	appendText(b []byte, a *Alert) []byte
	// headline returns the kind's facts for a summary (see Headline).
	headline(a *Alert) Headline
}

// view is one packet as the detectors see it, worked out once by the
// Engine. It and what it points to are borrowed for the packet call.
type view struct {
	p   *capture.Packet // TCP or UDP, with ports
	f   *Flow           // nil when the flow table does not track the packet
	dir Dir             // p's direction in f; valid when f is not nil
	// srcSvc and dstSvc say whether a UDP packet's ports are service ports
	// (the loop set): UDP between two of them is a loop's, and nothing
	// else's. False for TCP, where no loop runs.
	srcSvc, dstSvc bool

	home   prefixSet
	why    forgery // valid once judged
	judged bool
}

// forged says whether the packet's source is evidently forged, judged
// once per packet.
func (v *view) forged() forgery {
	if !v.judged {
		v.why, v.judged = forged(v.p, v.home), true
	}
	return v.why
}
