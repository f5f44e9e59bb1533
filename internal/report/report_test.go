package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// hostile is what a key or service would look like if packet data ever
// reached it unfiltered.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>&`

func TestReportContent(t *testing.T) {
	log := NewLog(0)
	writeSynthetic(t, log)
	a := detect.Alert{Time: at(90 * time.Second), Src: netip.MustParseAddrPort("198.51.100.7:7"),
		Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDExposedUDP), Severity: 3,
		Incident: detect.Incident{ID: "d6f620360c3ec781", Kind: detect.KindExposed, Phase: detect.PhaseStart,
			FirstSeen: at(90 * time.Second), LastSeen: at(90 * time.Second), Packets: 2, Bytes: 120,
			Direction: "outbound", Service: hostile}}
	log.WriteAlert(&a)
	// Keys are rendered from addresses today; the page must not depend on it.
	log.mu.Lock()
	log.byID["d6f620360c3ec781"].Key = hostile
	log.mu.Unlock()

	var b bytes.Buffer
	meta := Meta{Captures: []string{"monday.pcap", "tuesday <b>.pcap.gz"}, Start: t0, End: at(130 * time.Second),
		Sensor: "edge-1", Version: "1.2.3", Generated: time.Date(2024, 3, 20, 8, 0, 0, 0, time.UTC)}
	if err := log.WriteHTML(&b, meta); err != nil {
		t.Fatal(err)
	}
	page := b.String()

	for _, want := range []string{
		"<!DOCTYPE html>",
		"<code>monday.pcap</code>, <code>tuesday &lt;b&gt;.pcap.gz</code>",
		"2024-03-19 12:00:00.000 to 2024-03-19 12:02:10.000 UTC (2m10s)",
		"<dd>edge-1</dd>", "echowatch 1.2.3 on 2024-03-20 08:00:00.000 UTC",
		// counts per kind
		`fill="#d62728"/></svg>reflection</td><td class="num">1</td>`,
		`fill="#1f77b4"/></svg>loop</td><td class="num">1</td>`,
		`fill="#ff7f0e"/></svg>exposed</td><td class="num">1</td>`,
		// one row per incident
		`<span class="key">198.51.100.10</span><br><span class="id">1400651e2c7ca222</span>`,
		`<td class="time">12:00:01.002</td><td class="time">12:02:01.500</td><td class="num">2m00s</td><td class="num">150.2</td><td class="num">88.9 kbit/s</td><td class="num">9000</td><td class="num">666.0 kB</td><td class="detail">32 reflectors</td><td>inbound</td><td>end</td>`,
		`<span class="key">198.51.100.7:7-198.51.100.19:19</span><br><span class="id">78f0a4db5dd433b8</span>`,
		`<span class="id">d6f620360c3ec781</span>`,
		// the time axis: ticks every 15 s from 12:00:00, labelled
		`<text x="64" y="391" text-anchor="middle">12:00:00</text>`,
		`>12:02:00</text>`,
		// the rate axis: decades from 1 to 1k
		`<text x="58" y="372" dy="4" text-anchor="end">1</text>`,
		`dy="4" text-anchor="end">1k</text>`,
		// the reflection's samples: 50, 150.2, 120 and 0 pps at 2.5, 10, 62
		// and 122 s of 130, on a log axis of 356 px from 1 to 1000 pps
		`<path class="rate" d="M85.4,170.4L149.5,113.7L594.3,125.3L1107.6,372" stroke="#d62728"><title>1. reflection 198.51.100.10</title></path>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if n := strings.Count(page, `<path class="rate" `); n != 3 {
		t.Errorf("%d rate paths, want one per incident (3)", n)
	}
	if n := strings.Count(page, "<tr><td class=\"num\">"); n != 3 {
		t.Errorf("%d incident rows, want 3", n)
	}
	assertSelfContained(t, page)
	// Every hostile string is text: escaped in the table, the plot's
	// tooltip and the title.
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") || strings.Contains(page, "<b>") {
		t.Errorf("markup from data reached the page unescaped")
	}
	esc := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;`
	if n := strings.Count(page, esc); n != 3 {
		t.Errorf("the hostile key and service appear escaped %d times, want 3 (key, detail, plot title)", n)
	}
}

// assertSelfContained fails if the page could load anything: no URL, no
// script, no external style sheet, image or font.
func assertSelfContained(t *testing.T, page string) {
	t.Helper()
	for _, bad := range []string{"http://", "https://", "<script", "<link", "<img", "<iframe", "<object", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page has %q: it must not load anything", bad)
		}
	}
	if m := regexp.MustCompile(`<[^>]*\s(src|href|xlink:href|srcset|action)\s*=`).FindString(page); m != "" {
		t.Errorf("the page refers to something: %s", m)
	}
}

func TestReportEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := NewLog(0).WriteHTML(&b, Meta{Captures: []string{"quiet.pcap"}, Start: t0, End: at(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"No incident was found in this capture.", "<dd>0</dd>", "(1m00s)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the empty report lacks %q", want)
		}
	}
	if strings.Contains(page, `class="rate"`) {
		t.Errorf("the empty report draws a rate")
	}
	assertSelfContained(t, page)
}

// TestReportManyIncidents checks that the plot draws the busiest
// incidents only, and says so.
func TestReportManyIncidents(t *testing.T) {
	log := NewLog(0)
	var a detect.Alert
	a.Signature = mustSig(t, detect.SIDSpoofedFlood)
	for i := range maxPlotted + 20 {
		a.Time = at(time.Duration(i) * time.Second)
		a.Incident = detect.Incident{ID: fmt.Sprintf("flood-%03d", i),
			Kind: detect.KindSpoofedFlood, Phase: detect.PhaseStart, FirstSeen: a.Time, LastSeen: a.Time,
			PPS: float64(i + 1), PeakPPS: float64(i + 1), Target: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
		log.WriteAlert(&a)
	}
	var b bytes.Buffer
	if err := log.WriteHTML(&b, Meta{}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if n := strings.Count(page, `<path class="rate" `); n != maxPlotted {
		t.Errorf("%d paths, want %d", n, maxPlotted)
	}
	if !strings.Contains(page, "The 100 busiest of 120 incidents are drawn.") {
		t.Errorf("the page does not say that some incidents are not drawn")
	}
	// The 20 quietest (1 to 20 pps) are left out.
	if strings.Contains(page, "<title>20. spoofed_flood 192.0.2.19</title>") ||
		!strings.Contains(page, "<title>21. spoofed_flood 192.0.2.20</title>") {
		t.Errorf("the wrong incidents are drawn")
	}
	if strings.Contains(page, `class="label"`) {
		t.Errorf("more than %d lines are numbered", maxLabelled)
	}
}

func TestReportTimeTicks(t *testing.T) {
	x := func(time.Time) float64 { return 0 }
	for _, c := range []struct {
		span  time.Duration
		first string
		n     int
	}{
		{3 * time.Second, "12:00:00.5", 6},  // 500 ms steps from 12:00:00.5
		{90 * time.Second, "12:00:10", 9},   // 10 s
		{3 * time.Hour, "12:30", 6},         // 30 min
		{20 * 24 * time.Hour, "Mar 20", 10}, // 2 days (Truncate counts from year 1)
	} {
		start := t0.Add(100 * time.Millisecond)
		ticks := timeTicks(start, start.Add(c.span), x)
		if len(ticks) != c.n || ticks[0].Label != c.first {
			t.Errorf("span %v: %d ticks from %+v, want %d from %q", c.span, len(ticks), ticks[0], c.n, c.first)
		}
	}
	for e, want := range map[int]string{-2: "0.01", -1: "0.1", 0: "1", 2: "100", 3: "1k", 4: "10k", 6: "1M", 9: "1G"} {
		if got := decadeLabel(e); got != want {
			t.Errorf("decadeLabel(%d) = %q, want %q", e, got, want)
		}
	}
}

// TestReportChromium renders the report of a real run of the demo capture
// in headless Chromium and checks, in the screenshot, that the plot is
// drawn: the first incident's line in its colour, across the plot.
func TestReportChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium): the report is not rendered")
	}
	log, first, last := demoLog(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := log.WriteHTML(&b, Meta{Captures: []string{"demo.pcap"}, Start: first, End: last}); err != nil {
		t.Fatal(err)
	}
	assertSelfContained(t, b.String())
	if err := os.WriteFile(report, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+shot, "--window-size=1280,2000",
		"file://"+report)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X != 1280 || sz.Y != 2000 {
		t.Fatalf("screenshot is %v, want 1280x2000", sz)
	}
	if keep := os.Getenv("ECHOWATCH_KEEP_SCREENSHOT"); keep != "" {
		if b, err := os.ReadFile(shot); err == nil {
			os.WriteFile(keep, b, 0o644)
		}
	}

	incs := log.incidents()
	colour := parseHex(t, kindColor(incs[0].Kind))
	// The first incident's colour also fills small swatches (legend,
	// tables), a few dozen columns wide; its line crosses most of the plot.
	pixels, columns := colourSpread(img, colour)
	t.Logf("first incident (%s, %s): %d pixels over %d columns", incs[0].Kind, kindColor(incs[0].Kind), pixels, columns)
	if pixels < 500 || columns < 600 {
		t.Errorf("%d pixels over %d columns in the first incident's colour %v: want its line across the plot (500 and 600 at least)",
			pixels, columns, colour)
	}
	// Every kind of the run has its colour somewhere (legend, lines).
	for _, in := range incs {
		if n, _ := colourSpread(img, parseHex(t, kindColor(in.Kind))); n < 50 {
			t.Errorf("%s's colour %s has %d pixels", in.Kind, kindColor(in.Kind), n)
		}
	}
	// Not a blank page: a good part of it is ink, text and lines.
	ink := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r>>8 < 200 || g>>8 < 200 || b>>8 < 200 {
				ink++
			}
		}
	}
	t.Logf("%d dark pixels", ink)
	if ink < 20000 {
		t.Errorf("only %d dark pixels: the page looks blank", ink)
	}
}

// colourSpread counts the pixels of exactly colour c, and the columns
// they are in.
func colourSpread(img image.Image, c color.RGBA) (pixels, columns int) {
	b := img.Bounds()
	for x := b.Min.X; x < b.Max.X; x++ {
		in := false
		for y := b.Min.Y; y < b.Max.Y; y++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
				pixels++
				in = true
			}
		}
		if in {
			columns++
		}
	}
	return pixels, columns
}

func parseHex(t *testing.T, s string) color.RGBA {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	if err != nil || len(s) != 7 {
		t.Fatalf("colour %q", s)
	}
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 255}
}
