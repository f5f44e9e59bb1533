package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// statsEvent is an EVE "stats" event: the sensor's counters for capture,
// decode, flows and detection, in the spirit of Suricata's stats records.
type statsEvent struct {
	Timestamp time.Time
	Host      string
	Capture   captureStats
	Decoder   decoderStats
	Flow      detect.FlowStats
	Workers   []workerReport
	Detect    detect.Stats
	Outputs   []outputStats
	Evidence  *sinks.EvidenceStats // with --evidence-dir
}

var _ sinks.Event = (*statsEvent)(nil)

type captureStats struct {
	KernelPackets   uint64 `json:"kernel_packets"`
	KernelDrops     uint64 `json:"kernel_drops"`
	KernelIfDrops   uint64 `json:"kernel_ifdrops"`
	KernelFreezes   uint64 `json:"kernel_freezes"`
	QueueDrops      uint64 `json:"queue_drops"`
	FilterRejected  uint64 `json:"filter_rejected"`
	KernelAvailable bool   `json:"-"`
}

type decoderStats struct {
	Frames           uint64            `json:"frames"`
	Decoded          uint64            `json:"decoded"`
	Truncated        uint64            `json:"truncated"`
	Fragments        uint64            `json:"fragments"`
	FragmentsMatched uint64            `json:"fragments_matched"`
	FragmentsEvicted uint64            `json:"fragments_evicted"`
	Dropped          map[string]uint64 `json:"dropped"`
	// Tunnels counts frames by encapsulation and result (see
	// tunnelCounts): decoder.tunnels.vxlan.decoded, ...
	Tunnels map[string]map[string]uint64 `json:"tunnels"`
	// With --dedup: packets dropped as copies of one seen within the
	// window, and packets pushed out of its table within theirs.
	DedupDropped uint64 `json:"dedup_dropped"`
	DedupEvicted uint64 `json:"dedup_evicted"`
}

// workerReport is one worker's share: the frames it read and decoded, what
// its own socket's kernel counters say (AF_PACKET fanout), and the frames
// the dealer dropped because the worker fell behind (libpcap with several
// workers).
type workerReport struct {
	Worker        int    `json:"worker"`
	Frames        uint64 `json:"frames"`
	Decoded       uint64 `json:"decoded"`
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	KernelFreezes uint64 `json:"kernel_freezes"`
	QueueDrops    uint64 `json:"queue_drops"`
}

func (s *statsEvent) add(w workerStats) {
	d := w.decode
	s.Decoder.Frames += d.Frames
	s.Decoder.Decoded += d.Decoded
	s.Decoder.Truncated += d.Truncated
	s.Decoder.Fragments += d.Fragments
	s.Decoder.FragmentsMatched += d.FragmentsMatched
	s.Decoder.FragmentsEvicted += d.FragmentsEvicted
	if s.Decoder.Dropped == nil {
		s.Decoder.Dropped = map[string]uint64{}
	}
	for _, r := range capture.DropReasons() {
		s.Decoder.Dropped[r.String()] += d.Dropped[r]
	}
	if s.Decoder.Tunnels == nil {
		s.Decoder.Tunnels = map[string]map[string]uint64{}
	}
	for _, k := range capture.TunnelKinds() {
		counts := s.Decoder.Tunnels[k.String()]
		if counts == nil {
			counts = map[string]uint64{}
			s.Decoder.Tunnels[k.String()] = counts
		}
		for _, c := range tunnelCounts(k, d.Tunnels[k]) {
			counts[c.result] += c.n
		}
	}
	s.Decoder.DedupDropped += w.dedupDropped
	s.Decoder.DedupEvicted += w.dedupEvicted
	s.Flow.Add(w.flows)
	if w.last.After(s.Timestamp) {
		s.Timestamp = w.last
	}
}

func (s *statsEvent) addSource(st capture.SourceStats) {
	s.Capture.KernelAvailable = true
	s.Capture.KernelPackets += st.Received
	s.Capture.KernelDrops += st.Dropped
	s.Capture.KernelIfDrops += st.IfDropped
	s.Capture.KernelFreezes += st.Freezes
}

// EventMeta implements sinks.Event.
func (s *statsEvent) EventMeta() (eventType string, t time.Time) { return "stats", s.Timestamp }

// AppendEVE implements sinks.Event. Maps are encoded with sorted keys, so
// the record is deterministic.
func (s *statsEvent) AppendEVE(b []byte) []byte {
	type stats struct {
		Capture  *captureStats        `json:"capture,omitempty"`
		Workers  []workerReport       `json:"workers"`
		Decoder  decoderStats         `json:"decoder"`
		Flow     detect.FlowStats     `json:"flow"`
		Detect   detect.Stats         `json:"detect"`
		Outputs  []outputStats        `json:"outputs,omitempty"`
		Evidence *sinks.EvidenceStats `json:"evidence,omitempty"`
	}
	rec := struct {
		Timestamp string `json:"timestamp"`
		EventType string `json:"event_type"`
		Host      string `json:"host,omitempty"`
		Stats     stats  `json:"stats"`
	}{
		Timestamp: s.Timestamp.UTC().Format(eveTimeLayout),
		EventType: "stats",
		Host:      s.Host,
		Stats: stats{Decoder: s.Decoder, Flow: s.Flow, Workers: s.Workers, Detect: s.Detect, Outputs: s.Outputs,
			Evidence: s.Evidence},
	}
	if s.Capture.KernelAvailable || s.Capture.FilterRejected > 0 || s.Capture.QueueDrops > 0 {
		rec.Stats.Capture = &s.Capture
	}
	out, err := json.Marshal(rec)
	if err != nil { // only plain values: cannot happen
		return fmt.Appendf(b, `{"event_type":"stats","error":%q}`, err.Error())
	}
	return append(b, out...)
}

// AppendText implements sinks.Event.
func (s *statsEvent) AppendText(b []byte) []byte {
	b = fmt.Appendf(b, "%s stats: frames %d decoded %d truncated %d flows active %d created %d evicted %d",
		s.Timestamp.UTC().Format(eveTimeLayout), s.Decoder.Frames, s.Decoder.Decoded, s.Decoder.Truncated,
		s.Flow.Active, s.Flow.Created, s.Flow.Evicted)
	for _, r := range capture.DropReasons() {
		if n := s.Decoder.Dropped[r.String()]; n > 0 {
			b = fmt.Appendf(b, " %s %d", r, n)
		}
	}
	for _, k := range capture.TunnelKinds() {
		if n := s.Decoder.Tunnels[k.String()]["decoded"]; n > 0 {
			b = fmt.Appendf(b, " %s %d", k, n)
		}
	}
	if s.Decoder.DedupDropped > 0 {
		b = fmt.Appendf(b, " dedup dropped %d", s.Decoder.DedupDropped)
	}
	if s.Capture.KernelAvailable {
		b = fmt.Appendf(b, " kernel packets %d drops %d", s.Capture.KernelPackets, s.Capture.KernelDrops)
	}
	if s.Capture.QueueDrops > 0 {
		b = fmt.Appendf(b, " queue drops %d", s.Capture.QueueDrops)
	}
	return b
}

// eveTimeLayout is Suricata's timestamp layout; times are written in UTC.
const eveTimeLayout = "2006-01-02T15:04:05.000000-0700"
