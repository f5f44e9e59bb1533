package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/echowatch/echowatch/detect"
)

// Bounds of a Log, whose keys come from packets: a spoofed flood
// can open incidents as fast as it can forge them.
const (
	// defaultMaxIncidents is the most incidents a log keeps unless
	// max_memory says otherwise; later ones are counted, not kept.
	defaultMaxIncidents = 10000
	// defaultMaxPoints is the most rate samples kept per incident.
	defaultMaxPoints = 2000
	// pointsPerIncident bounds the samples of all incidents together, at
	// this many per incident the log keeps: with many incidents, each
	// keeps fewer (never below minPoints).
	pointsPerIncident = 25
	minPoints         = 16
	// incidentBytes is what the log holds per incident it may keep, at
	// most: the record and its share of the samples
	// (TestIncidentLogCost measures it).
	incidentBytes = 5120
	// logShare is the log's percentage of the bytes max_memory leaves for
	// tables (see detect.TableSize).
	logShare = 4
)

// LogTable is a Log's claim on max_memory: *n incidents, which
// detect.FitMemory sets when it is 0; a Log made by NewLog(*n) stays
// within the bytes it claims.
func LogTable(n *int) detect.TableSize {
	return detect.TableSize{Setting: "the incident log", Size: n, Bytes: incidentBytes, Share: logShare}
}

// Log keeps what the end-of-run summary and the HTML report need about
// every incident of a run: the facts of its latest alert, its peaks and a
// downsampled timeline of its rates. It is fed as a sensor.Observer: the
// engine's alerts (WriteAlert) and its incidents' rates (IncidentRate).
//
// Its methods may be called from any goroutine: the engine writes alerts
// and rate samples on its own, a progress line reads the count on
// another. Nothing it does is per packet.
type Log struct {
	maxIncidents int
	maxPoints    int
	points       int // samples kept of all incidents together, at most

	mu      sync.Mutex
	byID    map[string]*incidentRecord
	order   []*incidentRecord // in order of arrival
	dropped uint64            // incidents not kept because of maxIncidents
}

var (
	_ detect.AlertWriter  = (*Log)(nil)
	_ detect.RateObserver = (*Log)(nil)
)

// incidentRecord is what the log keeps about one incident: the facts a
// summary gives (Rates aside) and the timeline they are taken from. It
// holds copies: the engine reuses its Alert.
type incidentRecord struct {
	incidentSummary
	rates rateSeries
}

// NewLog returns a Log that keeps at most maxIncidents incidents (0 means
// 10000); later ones are counted (Dropped), not kept.
func NewLog(maxIncidents int) *Log {
	if maxIncidents <= 0 {
		maxIncidents = defaultMaxIncidents
	}
	return &Log{maxIncidents: maxIncidents, maxPoints: defaultMaxPoints, points: maxIncidents * pointsPerIncident,
		byID: make(map[string]*incidentRecord)}
}

// WriteAlert implements detect.AlertWriter: it records the alert's facts
// under its incident id. It copies what it keeps; a is not retained.
func (l *Log) WriteAlert(a *detect.Alert) {
	in := &a.Incident
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.record(in.ID, in.Kind)
	if r == nil {
		// Every incident has exactly one start (a suppressed one is
		// retried), so counting starts counts incidents.
		if in.Phase == detect.PhaseStart {
			l.dropped++
		}
		return
	}
	r.Alerts++
	// The latest alert speaks for the incident; an end is final.
	if r.Alerts == 1 || (!a.Time.Before(r.LastAlert) && r.Phase != detect.PhaseEnd) {
		r.LastAlert = a.Time
		r.Phase = in.Phase
		r.Key = a.Key()
		if a.Signature != nil {
			r.SID = a.Signature.ID
		}
		r.Severity = a.Severity
		r.Direction = in.Direction
		r.Proto = a.Proto
		r.Headline = a.Headline()
	}
	if a.CaptureFile != "" {
		r.CaptureFile = a.CaptureFile
	}
	if r.FirstSeen.IsZero() || in.FirstSeen.Before(r.FirstSeen) {
		r.FirstSeen = in.FirstSeen
	}
	if in.LastSeen.After(r.LastSeen) {
		r.LastSeen = in.LastSeen
	}
	r.Packets = max(r.Packets, in.Packets)
	r.Bytes = max(r.Bytes, in.Bytes)
	r.PeakPPS = max(r.PeakPPS, in.PeakPPS, in.PPS)
	r.PeakBPS = max(r.PeakBPS, in.PeakBPS, in.BPS)
	l.addPoint(r, ratePoint{t: a.Time, pps: in.PPS, bps: in.BPS})
}

// IncidentRate implements detect.RateObserver: the engine's per-second
// rates of open incidents make the report's timeline.
func (l *Log) IncidentRate(id string, _ detect.Kind, t time.Time, pps, bps float64) {
	l.sample(id, t, pps, bps)
}

// sample adds a point to an incident's rate timeline. An incident is
// known from its start alert, which comes before its samples; samples of
// others (not kept, or whose start the alert rate limit holds back) are
// ignored, so that only alerts make records.
func (l *Log) sample(id string, t time.Time, pps, bps float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.byID[id]; r != nil {
		r.PeakPPS = max(r.PeakPPS, pps)
		r.PeakBPS = max(r.PeakBPS, bps)
		l.addPoint(r, ratePoint{t: t, pps: pps, bps: bps})
	}
}

// record returns the incident's record, making it if there is room. It
// returns nil once the log is full.
func (l *Log) record(id string, kind detect.Kind) *incidentRecord {
	if r := l.byID[id]; r != nil {
		return r
	}
	if len(l.order) >= l.maxIncidents {
		return nil
	}
	r := &incidentRecord{incidentSummary: incidentSummary{ID: id, Kind: kind}}
	l.byID[id] = r
	l.order = append(l.order, r)
	// An incident keeps what it had when fewer shared the budget until
	// its next sample, and one that has ended gets none: each time the
	// incidents double, every timeline is cut to the share of the budget
	// it has now, so that all of them together hold at most twice the
	// budget (amortized, a record costs two cuts).
	if n := len(l.order); n >= minPoints && n&(n-1) == 0 {
		limit := l.limit()
		for _, r := range l.order {
			r.rates.trim(limit)
		}
	}
	return r
}

// limit returns the samples an incident may keep now.
func (l *Log) limit() int {
	return min(l.maxPoints, max(minPoints, l.points/len(l.order)))
}

// addPoint adds p to r's timeline within the per-incident share of the
// point budget.
func (l *Log) addPoint(r *incidentRecord, p ratePoint) {
	r.rates.add(p, l.limit())
}

// Count returns the incidents reported so far, kept or not.
func (l *Log) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order) + int(l.dropped)
}

// Dropped returns how many incidents the bound kept out.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// incidentSummary is one incident's facts; incidents returns consistent
// copies.
type incidentSummary struct {
	ID        string
	Kind      detect.Kind
	Key       string
	SID       uint32
	Severity  int
	Direction string
	Phase     detect.Phase
	Proto     uint8
	Alerts    int
	LastAlert time.Time

	FirstSeen, LastSeen time.Time
	Packets, Bytes      uint64
	PeakPPS, PeakBPS    float64

	Headline    detect.Headline // the kind's facts, from the latest alert
	CaptureFile string          // the evidence file

	Rates []ratePoint // in time order
}

// Duration is how long the incident's activity lasted.
func (s *incidentSummary) Duration() time.Duration { return s.LastSeen.Sub(s.FirstSeen) }

// incidents returns a copy of every incident kept, ordered by first seen,
// then id, so that a replay gives the same output.
func (l *Log) incidents() []incidentSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]incidentSummary, 0, len(l.order))
	for _, r := range l.order {
		c := r.incidentSummary
		c.Rates = r.rates.points()
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b incidentSummary) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// ratePoint is an incident's packet and bit rate at one moment.
type ratePoint struct {
	t        time.Time
	pps, bps float64
}

// rateSeries is a timeline of rate samples that stays within a bound by
// merging neighbours: when full, each pair becomes its busier point, and
// from then on each stride of new samples arrives as one, so that the
// whole series keeps one resolution and every peak survives.
type rateSeries struct {
	pts    []ratePoint
	stride int       // samples merged into each point (0 means 1)
	pend   ratePoint // the busiest of the samples of the stride in progress
	npend  int
}

func (s *rateSeries) add(p ratePoint, limit int) {
	if math.IsNaN(p.pps) || math.IsNaN(p.bps) {
		return
	}
	if s.stride == 0 {
		s.stride = 1
	}
	if s.npend == 0 || p.pps > s.pend.pps {
		s.pend = p
	}
	if s.npend++; s.npend < s.stride {
		return
	}
	s.pts = append(s.pts, s.pend)
	s.npend = 0
	s.trim(limit)
}

// trim merges neighbours until the series holds fewer than limit points,
// and gives back the memory a longer series took.
func (s *rateSeries) trim(limit int) {
	if len(s.pts) < limit || len(s.pts) < 2 {
		return
	}
	for len(s.pts) >= limit && len(s.pts) > 1 {
		n := 0
		for i := 0; i < len(s.pts); i += 2 {
			p := s.pts[i]
			if i+1 < len(s.pts) && s.pts[i+1].pps > p.pps {
				p = s.pts[i+1]
			}
			s.pts[n] = p
			n++
		}
		s.pts = s.pts[:n]
		s.stride *= 2
	}
	if cap(s.pts) > 2*limit {
		s.pts = slices.Clone(s.pts)
	}
}

// points returns a copy of the series, with the stride in progress, in
// time order.
func (s *rateSeries) points() []ratePoint {
	out := make([]ratePoint, len(s.pts), len(s.pts)+1)
	copy(out, s.pts)
	if s.npend > 0 {
		out = append(out, s.pend)
	}
	// Samples come in packet-time order, but files given out of order
	// make time go back.
	slices.SortStableFunc(out, func(a, b ratePoint) int { return a.t.Compare(b.t) })
	return out
}

// detail is the kind's headline facts in a few words.
func (s *incidentSummary) detail() string { return s.Headline.Detail }

// Plural is "1 incident", "2 incidents": n and word, in the plural
// unless n is 1.
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// The layouts of times in the summary table, whose header says UTC; the
// JSON has EVE's (eveTimeLayout).
const (
	tableTimeLayout = "2006-01-02 15:04:05.000"
	tableTimeOfDay  = "15:04:05.000"
)

// WriteTable writes the incidents as an aligned table for a terminal, then
// a line of counts by kind, and one that says how many were not kept.
func (l *Log) WriteTable(w io.Writer) error {
	incs := l.incidents()
	dropped := l.Dropped()
	var b bytes.Buffer
	if len(incs) > 0 {
		rows := [][]string{{"KIND", "KEY", "FIRST SEEN (UTC)", "LAST SEEN", "DURATION",
			"PEAK PPS", "PEAK BPS", "PACKETS", "BYTES", "DETAIL"}}
		for i := range incs {
			s := &incs[i]
			first := s.FirstSeen.UTC()
			last := s.LastSeen.UTC()
			lastText := last.Format(tableTimeLayout)
			if first.Format(time.DateOnly) == last.Format(time.DateOnly) {
				lastText = last.Format(tableTimeOfDay)
			}
			rows = append(rows, []string{
				s.Kind.String(), printable(s.Key), first.Format(tableTimeLayout), lastText,
				formatDuration(s.Duration()), FormatCount(s.PeakPPS), formatBits(s.PeakBPS),
				strconv.FormatUint(s.Packets, 10), FormatBytes(s.Bytes), printable(s.detail()),
			})
		}
		// Numbers align right, text left.
		right := []bool{false, false, false, false, true, true, true, true, true, false}
		writeColumns(&b, rows, right)
	}
	b.WriteString(countLine(incs))
	if dropped > 0 {
		fmt.Fprintf(&b, "%d more incidents were not kept (the summary keeps %d)\n", dropped, l.maxIncidents)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// countLine is "3 incidents: 1 reflection, 1 loop, 1 scan\n".
func countLine(incs []incidentSummary) string {
	var n [detect.NumKinds]int
	for i := range incs {
		if int(incs[i].Kind) < len(n) {
			n[incs[i].Kind]++
		}
	}
	line := Plural(len(incs), "incident")
	sep := ": "
	for k, c := range n {
		if c > 0 {
			line += sep + strconv.Itoa(c) + " " + detect.Kind(k).String()
			sep = ", "
		}
	}
	return line + "\n"
}

// writeColumns writes rows padded to columns two spaces apart; the last
// column is not padded. Widths count runes.
func writeColumns(b *bytes.Buffer, rows [][]string, right []bool) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			last := i == len(row)-1
			switch {
			case right[i]:
				b.WriteString(pad)
				b.WriteString(c)
			case last:
				b.WriteString(c)
			default:
				b.WriteString(c)
				b.WriteString(pad)
			}
			if !last {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
	}
}

// printable replaces what a terminal would interpret (control characters,
// escape sequences, invalid UTF-8) in text that came from packets.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// summaryEntry is one incident of the --summary JSON document. Its field
// order is the key order.
type summaryEntry struct {
	ID          string      `json:"id"`
	Kind        string      `json:"kind"`
	Key         string      `json:"key"`
	SignatureID uint32      `json:"signature_id"`
	Severity    int         `json:"severity"`
	Direction   string      `json:"direction"`
	Phase       string      `json:"phase"`
	FirstSeen   eveTime     `json:"first_seen"`
	LastSeen    eveTime     `json:"last_seen"`
	Duration    jsonSeconds `json:"duration"`
	PeakPPS     jsonRate    `json:"peak_pps"`
	PeakBPS     jsonRate    `json:"peak_bps"`
	Packets     uint64      `json:"packets"`
	Bytes       uint64      `json:"bytes"`
	Alerts      int         `json:"alerts"`

	// The kind's headline facts, present for their kind only.
	detect.Headline

	CaptureFile string `json:"capture_file,omitempty"` // with --evidence-dir
}

// eveTime marshals as EVE writes times: microseconds, UTC, "+0000".
type eveTime time.Time

// eveTimeLayout is Suricata's timestamp layout; times are written in UTC.
const eveTimeLayout = "2006-01-02T15:04:05.000000-0700"

func (t eveTime) MarshalJSON() ([]byte, error) {
	b := append([]byte{'"'}, time.Time(t).UTC().Format(eveTimeLayout)...)
	return append(b, '"'), nil
}

// jsonRate marshals a rate as EVE alerts write it: rounded to one
// decimal, without a trailing ".0", the same on every platform.
type jsonRate float64

func (f jsonRate) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, math.Round(finite(float64(f))*10)/10, 'f', -1, 64), nil
}

// jsonSeconds marshals a duration in seconds, to the millisecond.
type jsonSeconds time.Duration

func (d jsonSeconds) MarshalJSON() ([]byte, error) {
	s := time.Duration(d).Round(time.Millisecond).Seconds()
	return strconv.AppendFloat(nil, s, 'f', -1, 64), nil
}

// WriteJSON writes the incidents as one JSON array, ordered as the table:
// the --summary document.
func (l *Log) WriteJSON(w io.Writer) error {
	incs := l.incidents()
	entries := make([]summaryEntry, len(incs))
	for i := range incs {
		s := &incs[i]
		e := summaryEntry{
			ID: s.ID, Kind: s.Kind.String(), Key: s.Key, SignatureID: s.SID, Severity: s.Severity,
			Direction: s.Direction, Phase: s.Phase.String(),
			FirstSeen: eveTime(s.FirstSeen), LastSeen: eveTime(s.LastSeen),
			Duration: jsonSeconds(s.Duration()),
			PeakPPS:  jsonRate(s.PeakPPS), PeakBPS: jsonRate(s.PeakBPS),
			Packets: s.Packets, Bytes: s.Bytes, Alerts: s.Alerts, CaptureFile: s.CaptureFile,
		}
		e.Headline = s.Headline
		entries[i] = e
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// FormatCount writes a rate with one decimal, and an SI prefix from ten
// thousand up: "150.2", "9999.9", "12.3k", "4.1M".
func FormatCount(v float64) string {
	v = finite(v)
	if v < 9999.95 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	v, prefix := scaled(v)
	return strconv.FormatFloat(v, 'f', 1, 64) + prefix
}

// formatBits writes a bit rate: "88.9 kbit/s".
func formatBits(v float64) string {
	v, prefix := scaled(finite(v))
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + prefix + "bit/s"
}

// FormatBytes writes a byte count: "812 B", "166.5 kB".
func FormatBytes(n uint64) string {
	if n < 1000 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, prefix := scaled(float64(n))
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + prefix + "B"
}

// scaled divides v by thousands to below 1000 (as it rounds to one
// decimal) and returns it, rounded, with the SI prefix that says how far.
func scaled(v float64) (float64, string) {
	prefixes := [...]string{"", "k", "M", "G", "T", "P", "E"}
	u := 0
	for v >= 999.95 && u < len(prefixes)-1 {
		v /= 1000
		u++
	}
	return math.Round(v*10) / 10, prefixes[u]
}

// finite turns what cannot be a rate (NaN, infinities, negatives) into 0.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// formatDuration writes a duration the way a person reads it: "0.5s",
// "15.0s", "2m03s", "1h02m", "3d04h".
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(math.Floor(d.Seconds()*10)/10, 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
