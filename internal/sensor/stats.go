package sensor

import (
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// Stats are the counters of a run, in the spirit of Suricata's stats
// records: capture, decode, flows, each worker's share, and detection.
type Stats struct {
	Last    time.Time // detection's clock (detect.Engine.Now); zero before the first frame
	Capture CaptureStats
	Decoder DecoderStats
	Flow    detect.FlowStats
	Workers []WorkerStats
	Detect  detect.Stats
	// Telemetry is the router telemetry source's, when it is the input.
	Telemetry *capture.TelemetryStats
}

// CaptureStats are what the sources and the dealer counted.
type CaptureStats struct {
	// Kernel counters of live sources (KernelAvailable says there are).
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	KernelIfDrops uint64 `json:"kernel_ifdrops"`
	KernelFreezes uint64 `json:"kernel_freezes"`
	// QueueDrops counts the frames a dealer dropped, live, because their
	// worker had fallen behind.
	QueueDrops uint64 `json:"queue_drops"`
	// FilterRejected counts the frames the BPF filter rejected where it
	// ran in Go (capture files).
	FilterRejected  uint64 `json:"filter_rejected"`
	KernelAvailable bool   `json:"-"`
}

// DecoderStats are the decoders' counters, added up over the workers.
// With several workers, the fragments are matched in the stage's table:
// FragmentsMatched and FragmentsEvicted are its.
type DecoderStats struct {
	capture.DecodeStats
	// With Config.Dedup: packets dropped as copies of one seen within the
	// window, and packets pushed out of its table within theirs.
	DedupDropped, DedupEvicted uint64
}

// WorkerStats is one worker's share: the frames it read and decoded, what
// its own socket's kernel counters say (AF_PACKET fanout), and the frames
// the dealer dropped because the worker fell behind (libpcap with several
// workers).
type WorkerStats struct {
	Worker        int    `json:"worker"`
	Frames        uint64 `json:"frames"`
	Decoded       uint64 `json:"decoded"`
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	KernelFreezes uint64 `json:"kernel_freezes"`
	QueueDrops    uint64 `json:"queue_drops"`
}

// Stats returns the counters of the run. It reads the engine's and the
// stage's tables without a lock: call it from a Ticker, or once Run has
// returned.
func (s *Sensor) Stats() Stats {
	st := Stats{Last: s.eng.Now(), Detect: s.eng.Stats()}
	for i, w := range s.workers {
		ws := w.stats()
		st.add(ws)
		if ws.telemetry != nil {
			st.Telemetry = ws.telemetry // its worker published it
		}
		rep := WorkerStats{Worker: i, Frames: ws.decode.Frames, Decoded: ws.decode.Decoded}
		if s.dealer != nil {
			rep.QueueDrops = s.dealer.queueDrops[i].Load()
			st.Capture.QueueDrops += rep.QueueDrops
		}
		if len(s.srcs) > 1 { // a socket of its own
			if k, ok := sourceStats(w.src); ok {
				rep.KernelPackets, rep.KernelDrops, rep.KernelFreezes = k.Received, k.Dropped, k.Freezes
			}
		}
		st.Workers = append(st.Workers, rep)
	}
	if s.redo != nil {
		s.redo.publish() // the engine's goroutine is its own
		st.add(s.redo.stats())
		st.Decoder.DecodeStats.Sub(s.unread.decode)
		st.Flow.Untracked -= s.unread.skipped
		st.Capture.FilterRejected -= s.unread.rejected
	}
	if s.flows != nil {
		st.Flow.Add(s.flows.Stats())
		st.Decoder.FragmentsMatched, st.Decoder.FragmentsEvicted = s.frags.Stats()
	}
	if s.dedup != nil {
		st.Decoder.DedupDropped, st.Decoder.DedupEvicted = s.dedup.Stats()
	}
	for _, src := range s.srcs {
		if k, ok := sourceStats(src); ok {
			st.Capture.KernelAvailable = true
			st.Capture.KernelPackets += k.Received
			st.Capture.KernelDrops += k.Dropped
			st.Capture.KernelIfDrops += k.IfDropped
			st.Capture.KernelFreezes += k.Freezes
		}
		if fs, ok := src.(*capture.FilteredSource); ok {
			st.Capture.FilterRejected += fs.Rejected()
		}

	}
	return st
}

// add adds a worker's counters.
func (st *Stats) add(w workerStats) {
	s := &st.Decoder
	s.DecodeStats.Add(w.decode)
	s.DedupDropped += w.dedupDropped
	s.DedupEvicted += w.dedupEvicted
	st.Flow.Add(w.flows)
	st.Flow.Untracked += w.skipped
	st.Capture.FilterRejected += w.rejected
}

// sourceStats returns a live source's kernel counters.
func sourceStats(s capture.Source) (capture.SourceStats, bool) {
	ss, ok := s.(capture.StatsSource)
	if !ok {
		return capture.SourceStats{}, false
	}
	st, err := ss.Stats()
	return st, err == nil
}
