// Package report keeps what a run's incidents were, from the alerts and
// rates a sensor reports to its Observer, and writes them at the end: the
// summary as JSON (WriteJSON), a table for a terminal (WriteTable) and a
// self-contained HTML page with a plot of their rates (WriteHTML).
//
// A Log is bounded: it keeps a fixed number of incidents and of rate
// samples per incident, its claim on max_memory (LogTable); what it does
// is per alert and per second of packet time, never per packet.
package report

import (
	_ "embed"
	"html/template"
	"io"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/echowatch/echowatch/detect"
)

// reportTemplate is the page --report writes. It is parsed by
// html/template, which escapes every value by context: incident keys,
// services and file names reach the page from packets and the command line.
//
//go:embed report.html.tmpl
var reportTemplate string

var reportPage = template.Must(template.New("report").Parse(reportTemplate))

// Meta is what the page says about the run besides its incidents.
type Meta struct {
	Captures []string // the inputs, as given
	// Start and End are the first and last packet times of the capture,
	// the plot's time axis; zero values take the incidents' span.
	Start, End time.Time
	Sensor     string    // the sensor's name
	Version    string    // echowatch's version
	Generated  time.Time // wall-clock time of writing; zero leaves it out
	// Dir is the directory the page is written to, which links to the
	// evidence files are relative to; empty makes them absolute.
	Dir string
}

// kindColors are the colours of the kinds in the plot, its legend and the
// tables (Tableau 10, which stays distinct for colour-blind readers).
var kindColors = [detect.NumKinds]string{
	detect.KindReflection:   "#d62728",
	detect.KindLoop:         "#1f77b4",
	detect.KindSpoofedFlood: "#9467bd",
	detect.KindScan:         "#2ca02c",
	detect.KindExposed:      "#ff7f0e",
}

func kindColor(k detect.Kind) string {
	if int(k) < len(kindColors) {
		return kindColors[k]
	}
	return "#7f7f7f"
}

// The plot's geometry, in CSS pixels, and how much of it is drawn.
const (
	plotWidth, plotHeight = 1200, 420
	plotLeft, plotRight   = 64, 1176 // the x of the time axis' ends
	plotTop, plotBottom   = 16, 372  // the y of the rate axis' ends
	maxPlotted            = 100      // incidents drawn at most: the busiest
	maxLabelled           = 60       // numbered on the plot, beyond it only in the table
)

// WriteHTML writes a self-contained HTML page: the run, counts by kind,
// a plot of every incident's packet rate over the capture and the table
// of incidents. It uses no script, style sheet, font or image from
// elsewhere, so it reads offline and in a mail attachment.
func (l *Log) WriteHTML(w io.Writer, meta Meta) error {
	incs := l.incidents()
	v := reportView{
		Captures: meta.Captures, Sensor: meta.Sensor, Version: meta.Version,
		Total: len(incs), Dropped: l.Dropped(), MaxIncidents: l.maxIncidents,
	}
	if !meta.Generated.IsZero() {
		v.Generated = meta.Generated.UTC().Format(tableTimeLayout) + " UTC"
	}
	start, end := reportSpan(incs, meta)
	v.Start = start.UTC().Format(tableTimeLayout)
	v.End = end.UTC().Format(tableTimeLayout)
	v.Span = formatDuration(end.Sub(start))

	var counts [detect.NumKinds]int
	for i := range incs {
		if int(incs[i].Kind) < len(counts) {
			counts[incs[i].Kind]++
		}
	}
	for k, n := range counts {
		if n > 0 {
			v.Kinds = append(v.Kinds, kindCount{Name: detect.Kind(k).String(), Color: kindColors[k], Count: n})
		}
	}
	// Times of day do when the capture is all on one day, which the time
	// span gives.
	firstLayout := tableTimeLayout
	if start.UTC().Format(time.DateOnly) == end.UTC().Format(time.DateOnly) {
		firstLayout = tableTimeOfDay
	}
	for i := range incs {
		s := &incs[i]
		first, last := s.FirstSeen.UTC(), s.LastSeen.UTC()
		lastText := last.Format(tableTimeLayout)
		if first.Format(time.DateOnly) == last.Format(time.DateOnly) {
			lastText = last.Format(tableTimeOfDay)
		}
		v.Rows = append(v.Rows, reportRow{
			N: i + 1, Kind: s.Kind.String(), Color: kindColor(s.Kind), Key: s.Key,
			FirstSeen: first.Format(firstLayout), LastSeen: lastText,
			Duration: formatDuration(s.Duration()), PeakPPS: FormatCount(s.PeakPPS), PeakBPS: formatBits(s.PeakBPS),
			Packets: strconv.FormatUint(s.Packets, 10), Bytes: FormatBytes(s.Bytes), Detail: s.detail(),
			Direction: s.Direction, Severity: s.Severity, SID: s.SID, Phase: s.Phase.String(), ID: s.ID,
			Capture: evidenceLink(s.CaptureFile, meta.Dir),
		})
	}
	v.Plot = newPlot(incs, start, end)
	return reportPage.Execute(w, &v)
}

// reportSpan is the plot's time axis: the capture's, widened to every
// incident (files given out of time order can put one before the first
// packet of the first file), or the incidents' span alone.
func reportSpan(incs []incidentSummary, meta Meta) (start, end time.Time) {
	start, end = meta.Start, meta.End
	for i := range incs {
		s := &incs[i]
		times := []time.Time{s.FirstSeen, s.LastSeen, s.LastAlert}
		if len(s.Rates) > 0 {
			times = append(times, s.Rates[0].t, s.Rates[len(s.Rates)-1].t)
		}
		for _, t := range times {
			if t.IsZero() {
				continue
			}
			if start.IsZero() || t.Before(start) {
				start = t
			}
			if t.After(end) {
				end = t
			}
		}
	}
	if start.IsZero() {
		start = end
	}
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	return start, end
}

// reportView is what the template renders; every string in it is text,
// which the template escapes.
type reportView struct {
	Captures                   []string
	Sensor, Version, Generated string
	Start, End, Span           string
	Total                      int
	Dropped                    uint64
	MaxIncidents               int
	Kinds                      []kindCount
	Plot                       plotView
	Rows                       []reportRow
}

type kindCount struct {
	Name, Color string
	Count       int
}

type reportRow struct {
	N                                        int
	Kind, Color, Key                         string
	FirstSeen, LastSeen, Duration            string
	PeakPPS, PeakBPS, Packets, Bytes, Detail string
	Direction                                string
	Severity                                 int
	SID                                      uint32
	Phase, ID                                string
	Capture                                  string // a link to its evidence file
}

// evidenceLink returns the link from a page in dir to an evidence file:
// relative, so that the page and the files can be moved together, or a
// file URL.
func evidenceLink(file, dir string) string {
	if file == "" {
		return ""
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return ""
	}
	if dir != "" {
		if rel, err := filepath.Rel(dir, abs); err == nil {
			return (&url.URL{Path: filepath.ToSlash(rel)}).String()
		}
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
}

// plotView is the SVG plot, in coordinates ready to print.
type plotView struct {
	Width, Height         int
	Left, Right           int // the time axis' ends
	Top, Bottom           int // the rate axis' ends
	PlotWidth, PlotHeight int
	// Where the axes' labels and captions go.
	YLabelX, TickEnd, XLabelY, MidX, CaptionY, YCaptionX int

	XTicks, YTicks []plotTick
	AxisStart      string // the date and time the time axis starts at
	FloorLabel     string // the rate at the bottom of the rate axis
	Lines          []plotLine
	Plotted, Total int
	LabelsShown    bool
}

type plotTick struct {
	Pos   string // x for a time tick, y for a rate tick
	Label string
}

type plotLine struct {
	N     int
	Kind  string
	Color string
	Title string // the tooltip: number, kind and key
	D     string // the path of the sampled rates
	// Peak is a dashed line at the incident's peak across its span, drawn
	// when no sample shows it.
	Peak                  bool
	PeakX1, PeakX2, PeakY string
	PeakTitle             string
	Label                 bool
	LabelX, LabelY        string
}

// newPlot lays out the rate plot of incs over [start, end]: time across, a
// logarithmic packet rate up, since attacks span decades.
func newPlot(incs []incidentSummary, start, end time.Time) plotView {
	p := plotView{
		Width: plotWidth, Height: plotHeight, Left: plotLeft, Right: plotRight, Top: plotTop, Bottom: plotBottom,
		PlotWidth: plotRight - plotLeft, PlotHeight: plotBottom - plotTop,
		YLabelX: plotLeft - 6, TickEnd: plotBottom + 5, XLabelY: plotBottom + 19,
		MidX: (plotLeft + plotRight) / 2, CaptionY: plotHeight - 8, YCaptionX: -(plotTop + plotBottom) / 2,
		Total:     len(incs),
		AxisStart: start.UTC().Format(tableTimeLayout),
	}
	span := end.Sub(start)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(start)) / float64(span)
		return plotLeft + math.Max(0, math.Min(1, f))*(plotRight-plotLeft)
	}

	// Draw the busiest incidents, in table order.
	drawn := make([]int, len(incs))
	for i := range drawn {
		drawn[i] = i
	}
	if len(drawn) > maxPlotted {
		slices.SortStableFunc(drawn, func(a, b int) int {
			return -cmpFloat(incs[a].PeakPPS, incs[b].PeakPPS)
		})
		drawn = drawn[:maxPlotted]
		slices.Sort(drawn)
	}
	p.Plotted = len(drawn)
	p.LabelsShown = len(drawn) <= maxLabelled

	// The rate axis runs over whole decades around every rate drawn; rates
	// below its floor (an exposure has none) sit on the time axis.
	lo, hi := math.Inf(1), 0.0
	for _, i := range drawn {
		s := &incs[i]
		hi = math.Max(hi, s.PeakPPS)
		for _, r := range s.Rates {
			if r.pps > 0 {
				lo = math.Min(lo, r.pps)
			}
			hi = math.Max(hi, r.pps)
		}
	}
	loExp := 0
	if !math.IsInf(lo, 1) && lo < 1 {
		loExp = max(-2, int(math.Floor(math.Log10(lo))))
	}
	hiExp := loExp + 1
	if hi > 0 {
		hiExp = max(hiExp, int(math.Ceil(math.Log10(hi)-1e-9)))
	}
	y := func(v float64) float64 {
		e := float64(loExp)
		if v > 0 {
			e = math.Max(e, math.Log10(v))
		}
		f := (e - float64(loExp)) / float64(hiExp-loExp)
		return plotBottom - math.Min(1, f)*(plotBottom-plotTop)
	}
	p.FloorLabel = decadeLabel(loExp)
	for e := loExp; e <= hiExp; e++ {
		p.YTicks = append(p.YTicks, plotTick{Pos: coord(y(math.Pow(10, float64(e)))), Label: decadeLabel(e)})
	}
	p.XTicks = timeTicks(start, end, x)

	for _, i := range drawn {
		s := &incs[i]
		line := plotLine{
			N: i + 1, Kind: s.Kind.String(), Color: kindColor(s.Kind),
			Title: strconv.Itoa(i+1) + ". " + s.Kind.String() + " " + s.Key,
		}
		var d strings.Builder
		pts := columnPeaks(s.Rates, x)
		top := ratePoint{pps: -1}
		for j, r := range pts {
			px, py := x(r.t), y(r.pps)
			if j == 0 {
				d.WriteString("M" + coord(px) + "," + coord(py))
			} else {
				d.WriteString("L" + coord(px) + "," + coord(py))
			}
			if r.pps > top.pps {
				top = r
			}
		}
		if len(pts) == 1 {
			// One sample (a scan, an exposure): a ring where it is.
			d.Reset()
			d.WriteString("M" + coord(x(pts[0].t)-4) + "," + coord(y(pts[0].pps)) + "a4,4 0 1,0 8,0a4,4 0 1,0 -8,0")
		}
		line.D = d.String()
		labelX, labelY := x(top.t), y(top.pps)
		if s.PeakPPS > top.pps*1.01 && s.PeakPPS > 0 {
			line.Peak = true
			x1, x2 := x(s.FirstSeen), x(s.LastSeen)
			if x2-x1 < 8 {
				x1, x2 = (x1+x2)/2-4, (x1+x2)/2+4
			}
			line.PeakX1, line.PeakX2, line.PeakY = coord(x1), coord(x2), coord(y(s.PeakPPS))
			line.PeakTitle = line.Title + ": peak " + FormatCount(s.PeakPPS) + " pps"
			labelX, labelY = (x1+x2)/2, y(s.PeakPPS)
		}
		if p.LabelsShown && len(pts) > 0 {
			line.Label = true
			line.LabelX = coord(math.Min(plotRight-6, math.Max(plotLeft+6, labelX)))
			line.LabelY = coord(math.Max(plotTop+10, labelY-8))
		}
		p.Lines = append(p.Lines, line)
	}
	return p
}

// columnPeaks keeps, of the samples that fall in one pixel column, the
// busiest: a path needs no more points than the plot has columns.
func columnPeaks(rates []ratePoint, x func(time.Time) float64) []ratePoint {
	var out []ratePoint
	col := math.NaN()
	for _, r := range rates {
		c := math.Floor(x(r.t))
		switch {
		case c != col:
			out = append(out, r)
			col = c
		case r.pps > out[len(out)-1].pps:
			out[len(out)-1] = r
		}
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// coord prints a coordinate to a tenth of a pixel.
func coord(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// decadeLabel names the rate 10^e: "0.01", "1", "100", "10k", "1M".
func decadeLabel(e int) string {
	if e < 0 {
		return strconv.FormatFloat(math.Pow(10, float64(e)), 'f', -e, 64)
	}
	prefixes := [...]string{"", "k", "M", "G", "T"}
	u := min(e/3, len(prefixes)-1)
	return strconv.FormatFloat(math.Pow(10, float64(e-3*u)), 'f', 0, 64) + prefixes[u]
}

// tickSteps are the intervals a time axis may be marked at.
var tickSteps = []time.Duration{
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

// timeTicks marks the time axis at round UTC times, ten at most.
func timeTicks(start, end time.Time, x func(time.Time) float64) []plotTick {
	span := end.Sub(start)
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s <= 10 {
			step = s
			break
		}
	}
	layout := "15:04:05"
	switch {
	case step < time.Second:
		layout = "15:04:05.0"
	case step >= 24*time.Hour:
		layout = "Jan 2"
	case step >= time.Minute:
		layout = "15:04"
	}
	if step < 24*time.Hour && start.UTC().YearDay() != end.UTC().YearDay() {
		layout = "Jan 2 " + layout
	}
	var ticks []plotTick
	// Round UTC times: Truncate counts from year 1, which began a UTC day.
	first := start.UTC().Truncate(step)
	if first.Before(start) {
		first = first.Add(step)
	}
	for t := first; !t.After(end); t = t.Add(step) {
		ticks = append(ticks, plotTick{Pos: coord(x(t)), Label: t.UTC().Format(layout)})
	}
	return ticks
}
