package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/sensor"
	"github.com/echowatch/echowatch/sinks"
)

// statsEvent is an EVE "stats" event: the sensor's counters for capture,
// decode, flows and detection (sensor.Stats), and the outputs' and the
// evidence files'. Its stats object has Suricata's counters under
// Suricata's names, where one of ours means the same (uptime,
// capture.kernel_*, decoder.pkts, flow.active, detect.alert, ...), for the
// dashboards built on them, and all of ours under "echowatch".
type statsEvent struct {
	Timestamp time.Time // the latest frame time read
	Host      string
	Uptime    time.Duration // since the sensor started
	Capture   sensor.CaptureStats
	Decoder   decoderStats
	// Suricata is what Suricata's decoder object says: the same
	// counters as Decoder's, and those by layer.
	Suricata suricataDecoder
	Flow     detect.FlowStats
	Workers  []sensor.WorkerStats
	Detect   detect.Stats
	Outputs  []sinks.OutputStats
	Evidence *sinks.EvidenceStats // with --evidence-dir
	// Telemetry is the router telemetry input's (--sflow, --netflow,
	// --telemetry).
	Telemetry *telemetryStats
}

// telemetryStats are capture.TelemetryStats as the stats event and the
// metrics name them.
type telemetryStats struct {
	Datagrams uint64 `json:"datagrams"`
	Samples   uint64 `json:"samples"`
	Records   uint64 `json:"records"`
	// Dropped counts by reason (capture.TelemetryDrop) what did not count.
	Dropped map[string]uint64 `json:"dropped"`
	// ExportersEvicted counts the exporters pushed out of a full table
	// (max_exporters); Early the frames that had to leave the reorder heap
	// before their time because it was full; Late those whose time had
	// gone by when they came (hold_back too short), counted later.
	ExportersEvicted uint64          `json:"exporters_evicted"`
	Early            uint64          `json:"early"`
	Late             uint64          `json:"late"`
	Exporters        []exporterStats `json:"exporters"`
}

// exporterStats is one exporter's share. Listed says the configuration
// names it (not only allow_unknown): the metrics label only those by
// address.
type exporterStats struct {
	Address        string `json:"address"`
	Listed         bool   `json:"listed"`
	Datagrams      uint64 `json:"datagrams"`
	Samples        uint64 `json:"samples"`
	Records        uint64 `json:"records"`
	SamplingRate   uint32 `json:"sampling_rate"`
	SequenceGaps   uint64 `json:"sequence_gaps"`
	Lost           uint64 `json:"lost"`
	TemplateMisses uint64 `json:"template_misses"`
	Malformed      uint64 `json:"malformed"`
}

// newTelemetryStats names t's counters; listed says which exporters the
// configuration names.
func newTelemetryStats(t *capture.TelemetryStats, listed func(netip.Addr) bool) *telemetryStats {
	ts := &telemetryStats{Datagrams: t.Datagrams, Samples: t.Samples, Records: t.Records,
		Dropped: map[string]uint64{}, ExportersEvicted: t.Evicted, Early: t.Early, Late: t.Late,
		Exporters: make([]exporterStats, 0, len(t.Exporters))}
	for r, name := range capture.TelemetryDropNames() {
		ts.Dropped[name] = t.Dropped[r]
	}
	for _, e := range t.Exporters {
		ts.Exporters = append(ts.Exporters, exporterStats{Address: e.Addr.String(), Listed: listed(e.Addr),
			Datagrams: e.Datagrams, Samples: e.Samples, Records: e.Records, SamplingRate: e.Rate,
			SequenceGaps: e.SequenceGaps, Lost: e.Lost, TemplateMisses: e.TemplateMisses, Malformed: e.Malformed})
	}
	return ts
}

var _ sinks.Event = (*statsEvent)(nil)

// decoderStats are sensor.DecoderStats as the stats event and the metrics
// name them: drops by reason, and tunnel counters by kind and result.
type decoderStats struct {
	Frames           uint64            `json:"frames"`
	Decoded          uint64            `json:"decoded"`
	Truncated        uint64            `json:"truncated"`
	Fragments        uint64            `json:"fragments"`
	FragmentsMatched uint64            `json:"fragments_matched"`
	FragmentsEvicted uint64            `json:"fragments_evicted"`
	Dropped          map[string]uint64 `json:"dropped"`
	// Tunnels counts frames by encapsulation and result (see
	// tunnelCounts): echowatch.decoder.tunnels.vxlan.decoded, ...
	Tunnels map[string]map[string]uint64 `json:"tunnels"`
	// With --dedup: packets dropped as copies of one seen within the
	// window, and packets pushed out of its table within theirs.
	DedupDropped uint64 `json:"dedup_dropped"`
	DedupEvicted uint64 `json:"dedup_evicted"`
}

// suricataDecoder is Suricata's decoder object of a stats event: the
// decoders' counters under the names of Suricata's that mean the same.
type suricataDecoder struct {
	Pkts          uint64 `json:"pkts"`
	Bytes         uint64 `json:"bytes"`
	Invalid       uint64 `json:"invalid"` // malformed, at any layer
	IPv4          uint64 `json:"ipv4"`
	IPv6          uint64 `json:"ipv6"`
	TCP           uint64 `json:"tcp"`
	UDP           uint64 `json:"udp"`
	VLAN          uint64 `json:"vlan"`
	VLANQinQ      uint64 `json:"vlan_qinq"`
	AvgPktSize    uint64 `json:"avg_pkt_size"`
	TooManyLayers uint64 `json:"too_many_layers"`
}

func newSuricataDecoder(d *capture.DecodeStats) suricataDecoder {
	sd := suricataDecoder{Pkts: d.Frames, Bytes: d.Bytes, IPv4: d.IPv4, IPv6: d.IPv6, TCP: d.TCP, UDP: d.UDP,
		VLAN: d.VLAN, VLANQinQ: d.VLANQinQ, TooManyLayers: d.Dropped[capture.DropTunnelTooDeep]}
	for _, r := range []capture.DropReason{capture.DropMalformedLink, capture.DropMalformedIPv4, capture.DropMalformedIPv6,
		capture.DropMalformedUDP, capture.DropMalformedTCP, capture.DropMalformedTunnel} {
		sd.Invalid += d.Dropped[r]
	}
	if d.Frames > 0 {
		sd.AvgPktSize = d.Bytes / d.Frames
	}
	return sd
}

// newStatsEvent returns the stats event of sensor host's counters s;
// listed says which telemetry exporters the configuration names.
func newStatsEvent(host string, s sensor.Stats, listed func(netip.Addr) bool) *statsEvent {
	d := s.Decoder
	ev := &statsEvent{Timestamp: s.Last, Host: host, Capture: s.Capture, Flow: s.Flow, Workers: s.Workers, Detect: s.Detect,
		Decoder: decoderStats{Frames: d.Frames, Decoded: d.Decoded, Truncated: d.Truncated, Fragments: d.Fragments,
			FragmentsMatched: d.FragmentsMatched, FragmentsEvicted: d.FragmentsEvicted,
			Dropped: map[string]uint64{}, Tunnels: map[string]map[string]uint64{},
			DedupDropped: d.DedupDropped, DedupEvicted: d.DedupEvicted},
		Suricata: newSuricataDecoder(&d.DecodeStats)}
	for _, r := range capture.DropReasons() {
		ev.Decoder.Dropped[r.String()] = d.Dropped[r]
	}
	for _, k := range capture.TunnelKinds() {
		counts := map[string]uint64{}
		for _, c := range tunnelCounts(k, d.Tunnels[k]) {
			counts[c.result] += c.n
		}
		ev.Decoder.Tunnels[k.String()] = counts
	}
	if s.Telemetry != nil {
		ev.Telemetry = newTelemetryStats(s.Telemetry, listed)
	}
	return ev
}

// statsTicker is the sensor's Ticker, every statsEvery: it publishes the
// counters for the metrics; live, it looks for blind spots and, with
// --stats, writes a stats event every --stats-interval. Offline, the blind
// spots wait for the end of the run: its progress line owns the terminal
// until then. It runs on the engine's goroutine, or after the run.
type statsTicker struct {
	sens     *sensor.Sensor // set once made
	cfg      config
	every    time.Duration
	out      *sinks.Fanout
	mets     *metrics        // with --metrics-listen
	evidence *sinks.Evidence // with --evidence-dir
	blind    *blindSpots
	written  time.Time // when the last stats event was written
	started  time.Time
}

// statsEvery is how often the sensor ticks: live, the stats period with
// --stats and at most a second; at most a second with --metrics-listen
// (offline too); otherwise never. Live, the counters are looked at every
// second at least, so that a blind spot is warned of as it appears (see
// blindSpots).
func statsEvery(cfg config) time.Duration {
	var every time.Duration
	if cfg.Stats && cfg.live() {
		every = cfg.StatsInterval
	}
	if (cfg.MetricsListen != "" || cfg.live()) && (every == 0 || every > metricsEvery) {
		every = metricsEvery
	}
	return every
}

// Tick implements sensor.Ticker.
func (t *statsTicker) Tick() {
	ev := t.snapshot()
	if !t.cfg.live() {
		return
	}
	t.warn(ev)
	if !t.cfg.Stats {
		return
	}
	if now := time.Now(); t.every == t.cfg.StatsInterval || now.Sub(t.written) >= t.cfg.StatsInterval-t.every/2 {
		t.written = now
		t.write(ev)
	}
}

var _ sensor.Ticker = (*statsTicker)(nil)

// warn warns of the blind spots and the clock's trouble that ev shows,
// each once a run.
func (t *statsTicker) warn(ev *statsEvent) {
	t.blind.check(ev.Decoder)
	t.blind.checkClock(ev.Detect)
}

// snapshot publishes the counters for the metrics and returns them.
func (t *statsTicker) snapshot() *statsEvent {
	ev := newStatsEvent(t.cfg.SensorName, t.sens.Stats(), t.cfg.Telemetry.listed)
	ev.Uptime = time.Since(t.started)
	if t.evidence != nil {
		s := t.evidence.Stats()
		ev.Evidence = &s
	}
	if t.mets != nil {
		t.mets.publish(ev)
	}
	return ev
}

// write writes ev, with the outputs' counters, to the outputs.
func (t *statsTicker) write(ev *statsEvent) {
	e := *ev // ev may be published: left as it is
	e.Outputs = t.out.Stats()
	t.out.Write(&e)
}

// EventMeta implements sinks.Event.
func (s *statsEvent) EventMeta() (eventType string, t time.Time) { return "stats", s.Timestamp }

// AppendEVE implements sinks.Event. Maps are encoded with sorted keys, so
// the record is deterministic.
func (s *statsEvent) AppendEVE(b []byte) []byte {
	type ours struct {
		Capture   *sensor.CaptureStats `json:"capture,omitempty"`
		Workers   []sensor.WorkerStats `json:"workers"`
		Decoder   decoderStats         `json:"decoder"`
		Flow      detect.FlowStats     `json:"flow"`
		Detect    detect.Stats         `json:"detect"`
		Outputs   []sinks.OutputStats  `json:"outputs,omitempty"`
		Evidence  *sinks.EvidenceStats `json:"evidence,omitempty"`
		Telemetry *telemetryStats      `json:"telemetry,omitempty"`
	}
	// Suricata's counters, as its stats event names them.
	type kernel struct {
		KernelPackets uint64 `json:"kernel_packets"`
		KernelDrops   uint64 `json:"kernel_drops"`
		KernelIfDrops uint64 `json:"kernel_ifdrops"`
	}
	type flow struct {
		Active uint64 `json:"active"`
		Total  uint64 `json:"total"`
	}
	type detection struct {
		Alert      uint64 `json:"alert"`
		Suppressed uint64 `json:"alerts_suppressed"`
	}
	type stats struct {
		Uptime    int64           `json:"uptime"`
		Capture   *kernel         `json:"capture,omitempty"`
		Decoder   suricataDecoder `json:"decoder"`
		Flow      flow            `json:"flow"`
		Detect    detection       `json:"detect"`
		Echowatch ours            `json:"echowatch"`
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
		Stats: stats{
			Uptime:  int64(s.Uptime / time.Second),
			Decoder: s.Suricata,
			Flow:    flow{Active: uint64(s.Flow.Active), Total: s.Flow.Created},
			Detect:  detection{Alert: s.Detect.Alerts, Suppressed: s.Detect.Suppressed},
			Echowatch: ours{Decoder: s.Decoder, Flow: s.Flow, Workers: s.Workers, Detect: s.Detect, Outputs: s.Outputs,
				Evidence: s.Evidence, Telemetry: s.Telemetry},
		},
	}
	if c := s.Capture; c.KernelAvailable {
		rec.Stats.Capture = &kernel{KernelPackets: c.KernelPackets, KernelDrops: c.KernelDrops, KernelIfDrops: c.KernelIfDrops}
	}
	if s.Capture.KernelAvailable || s.Capture.FilterRejected > 0 || s.Capture.QueueDrops > 0 {
		rec.Stats.Echowatch.Capture = &s.Capture
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
	if t := s.Telemetry; t != nil {
		b = fmt.Appendf(b, " telemetry datagrams %d samples %d records %d exporters %d", t.Datagrams, t.Samples, t.Records, len(t.Exporters))
		for _, name := range capture.TelemetryDropNames() {
			if n := t.Dropped[name]; n > 0 {
				b = fmt.Appendf(b, " %s %d", name, n)
			}
		}
	}
	if d := s.Detect; d.TimeStepsBack > 0 || d.TimeInvalid > 0 {
		b = fmt.Appendf(b, " time steps back %d invalid %d", d.TimeStepsBack, d.TimeInvalid)
	}
	return b
}

// eveTimeLayout is Suricata's timestamp layout; times are written in UTC.
const eveTimeLayout = "2006-01-02T15:04:05.000000-0700"
