package sinks

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// testAlert is a loop alert whose incident id holds every character that
// structured data and CEF must escape.
func testAlert() *detect.Alert {
	sig, _ := detect.LookupSignature(detect.SIDLoop)
	t := time.Date(2024, 5, 1, 12, 0, 7, 250000000, time.UTC)
	a := &detect.Alert{
		Time:  t,
		Src:   netip.MustParseAddrPort("192.0.2.7:7"),
		Dst:   netip.MustParseAddrPort("192.0.2.19:19"),
		Proto: capture.ProtoUDP, Host: "sensor-1", Signature: sig, Severity: sig.Severity,
		Incident: detect.Incident{
			ID: `a"b\c]d`, Kind: detect.KindLoop, Phase: detect.PhaseStart,
			FirstSeen: t, LastSeen: t, Packets: 10, Bytes: 1000, Direction: "internal",
			Endpoints: [2]netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:7"), netip.MustParseAddrPort("192.0.2.19:19")},
			Advice:    "x=1\\2\nnext",
		},
	}
	return a
}

func TestSyslogFormats(t *testing.T) {
	a := testAlert()
	eve := string(a.AppendEVE(nil))
	pid := strconv.Itoa(os.Getpid())
	cases := []struct {
		name   string
		format SyslogFormat
		want   string
	}{
		{"5424", RFC5424, "" +
			"<131>" + // local0 (16) * 8 + error (3): the loop signature's severity 2
			"1 " + // VERSION
			"2024-05-01T12:00:07.250000Z " + // TIMESTAMP: the alert's packet time, UTC
			"sensor-1 " + // HOSTNAME
			"echowatch " + // APP-NAME
			pid + " " + // PROCID
			"loop " + // MSGID: the incident kind
			`[echowatch@32473 kind="loop" phase="start" id="a\"b\\c\]d" sid="9000004"] ` + // SD, '"' '\' ']' escaped
			eve}, // MSG: the EVE JSON
		{"3164", RFC3164, "" +
			"<131>" + // PRI
			a.Time.Local().Format(time.Stamp) + " " + // TIMESTAMP, local time
			"sensor-1 " + // HOSTNAME
			"echowatch[" + pid + "]: " + // TAG[PID]:
			eve},
		{"cef", CEF, "" +
			"<131>" + a.Time.Local().Format(time.Stamp) + " sensor-1 " + // BSD header
			"CEF:0|echowatch|echowatch|1.2.3|" + // version, vendor, product, device version
			"9000004|ECHOWATCH UDP service loop|" + // signature id, name
			"5|" + // severity 2 → CEF medium
			"rt=1714564807250 dvchost=sensor-1 src=192.0.2.7 spt=7 dst=192.0.2.19 dpt=19 proto=UDP " +
			"cat=Attempted Denial of Service act=allowed " +
			`externalId=a"b\\c]d ` + // '\' escaped in a value; '"' and ']' are not special
			"cs1Label=kind cs1=loop cs2Label=phase cs2=start " +
			"cs3Label=key cs3=192.0.2.7:7-192.0.2.19:19 cs4Label=direction cs4=internal cnt=10 in=1000 " +
			`msg=x\=1\\2\nnext`}, // '=' '\' and the line break escaped
	}
	for _, c := range cases {
		s, err := NewSyslog(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514", Format: c.format, Hostname: "sensor-1", Version: "1.2.3"})
		if err != nil {
			t.Fatal(err)
		}
		got := string(s.appendMessage(nil, NewRecord(a)))
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestSyslogFormatsTunnel: an alert on tunnelled traffic of a tenant says
// so in RFC 5424's structured data and in CEF's extension, as the text
// line does; tenant 0 and no tunnel leave the parameters out (see
// TestSyslogFormats).
func TestSyslogFormatsTunnel(t *testing.T) {
	a := testAlert()
	a.Incident.ID = "0123456789abcdef"
	a.Tenant = 42
	a.Tunnel = capture.Tunnel{Depth: 1, Kind: capture.TunnelVXLAN, HasID: true, ID: 42,
		InnerKind: capture.TunnelVXLAN, InnerHasID: true, InnerID: 42,
		Src: netip.MustParseAddr("203.0.113.1"), Dst: netip.MustParseAddr("198.51.100.2"),
		Proto: capture.ProtoUDP, SrcPort: 51000, DstPort: 4789}
	r := NewRecord(a)
	cases := []struct {
		format SyslogFormat
		want   string
	}{
		{RFC5424, `[echowatch@32473 kind="loop" phase="start" id="0123456789abcdef" sid="9000004" ` +
			`tenant="42" tunnel="vxlan vni 42 203.0.113.1->198.51.100.2"] {`},
		{CEF, " cs3Label=key cs3=192.0.2.7:7-192.0.2.19:19 tenant 42 cs4Label=direction cs4=internal " +
			"cs5Label=tunnel cs5=vxlan vni 42 203.0.113.1->198.51.100.2 cn1Label=tenant cn1=42 cnt=10 "},
	}
	for _, c := range cases {
		s, err := NewSyslog(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514", Format: c.format, Hostname: "sensor-1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(s.appendMessage(nil, r)); !strings.Contains(got, c.want) {
			t.Errorf("%v:\n got %s\nlacks %s", c.format, got, c.want)
		}
	}
	if text := string(r.AppendText(nil)); !strings.Contains(text, " via vxlan vni 42 203.0.113.1->198.51.100.2 tenant 42 id ") {
		t.Errorf("text %s", text)
	}
}

// TestSyslogFormatsTelemetry: an alert on traffic that router telemetry
// reported says how, in RFC 5424's structured data and in CEF's
// extension, in the text line's words; an alert on captured traffic
// leaves the parameters out (see TestSyslogFormats).
func TestSyslogFormatsTelemetry(t *testing.T) {
	a := testAlert()
	a.Incident.ID = "0123456789abcdef"
	a.Incident.Sampling = detect.Sampling{Format: capture.TelemetrySFlow, Rate: 1000}
	a.Incident.Exporters = []detect.Exporter{{Addr: netip.MustParseAddr("192.0.2.1"), InIf: 3, Packets: 12000}}
	r := NewRecord(a)
	cases := []struct {
		format SyslogFormat
		want   string
	}{
		{RFC5424, `sid="9000004" telemetry="sflow 1:1000 via 192.0.2.1 in 3"] {`},
		{CEF, " cs4Label=direction cs4=internal cs6Label=telemetry cs6=sflow 1:1000 via 192.0.2.1 in 3 cnt=10 "},
	}
	for _, c := range cases {
		s, err := NewSyslog(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514", Format: c.format, Hostname: "sensor-1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(s.appendMessage(nil, r)); !strings.Contains(got, c.want) {
			t.Errorf("%v:\n got %s\nlacks %s", c.format, got, c.want)
		}
	}
	if text := string(r.AppendText(nil)); !strings.HasSuffix(text, " id 0123456789abcdef [sflow 1:1000 via 192.0.2.1 in 3]") {
		t.Errorf("text %s", text)
	}
}

func TestSyslogSeverity(t *testing.T) {
	a := testAlert()
	for sev, want := range map[int]int{1: 2, 2: 3, 3: 4, 0: 5} {
		a.Severity = sev
		if got := syslogSeverity(NewRecord(a)); got != want {
			t.Errorf("alert severity %d: syslog severity %d, want %d", sev, got, want)
		}
	}
}

func TestEscapes(t *testing.T) {
	cases := []struct {
		fn       func([]byte, string) []byte
		in, want string
	}{
		{appendSDValue, `plain`, `plain`},
		{appendSDValue, `q"b\s]e`, `q\"b\\s\]e`},
		{appendSDValue, `[x=y]`, `[x=y\]`}, // '[' and '=' need nothing inside quotes
		{appendCEFHeader, `a|b\c`, `a\|b\\c`},
		{appendCEFHeader, "two\nlines\r", "two lines "},
		{appendCEFHeader, `a=b`, `a=b`}, // '=' is only special in the extension
		{func(b []byte, s string) []byte { return appendCEFExt(b, "k", s) }, `a=b\c|d`, ` k=a\=b\\c|d`},
		{func(b []byte, s string) []byte { return appendCEFExt(b, "k", s) }, "1\r\n2", ` k=1\r\n2`},
		{func(b []byte, s string) []byte { return appendCEFExt(b, "k", s) }, "", ``},
	}
	for _, c := range cases {
		if got := string(c.fn(nil, c.in)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
	if got := headerField("my sensor\x01", 255); got != "my_sensor_" {
		t.Errorf("headerField: %q", got)
	}
	if got := headerField("", 32); got != "-" {
		t.Errorf("headerField of nothing: %q", got)
	}
}

// statsEvent stands for the sensor's stats event: an Event that is not
// an alert.
type statsEvent struct{}

func (statsEvent) AppendEVE(b []byte) []byte {
	return append(b, `{"timestamp":"2024-05-01T12:00:00.000000+0000","event_type":"stats","host":"sensor-1","stats":{}}`...)
}
func (statsEvent) AppendText(b []byte) []byte { return append(b, "stats"...) }
func (statsEvent) EventMeta() (string, time.Time) {
	return "stats", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
}

func TestRecordOfOtherEvents(t *testing.T) {
	r := NewRecord(statsEvent{})
	if r.Type != "stats" || r.Alert() != nil || !r.Time.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) ||
		string(r.AppendText(nil)) != "stats" {
		t.Fatalf("record %+v", r)
	}
	s, _ := NewSyslog(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514", Hostname: "sensor-1"})
	got := string(s.appendMessage(nil, r))
	want := "<134>1 2024-05-01T12:00:00.000000Z sensor-1 echowatch " + strconv.Itoa(os.Getpid()) + " stats - " + string(r.EVE)
	if got != want {
		t.Errorf("stats as syslog:\n got %s\nwant %s", got, want)
	}
}

func TestRecordKeepsNothingOfTheAlert(t *testing.T) {
	a := testAlert()
	a.VLANs = []uint16{10}
	r := NewRecord(a)
	eve := string(r.EVE)
	a.Incident.Packets = 99
	a.VLANs[0] = 20
	a.Incident.ID = "changed"
	if string(r.EVE) != eve || r.Alert().Incident.Packets != 10 || r.Alert().VLANs[0] != 10 || r.Alert().ID() == "changed" {
		t.Fatal("the record shares memory with the alert that detection reuses")
	}
	if !strings.Contains(eve, `"host":"sensor-1"`) {
		t.Errorf("EVE without the sensor's host: %s", eve)
	}
}

func TestRing(t *testing.T) {
	r := newRing(5)
	recs := make([]*Record, 6)
	for i := range recs {
		recs[i] = &Record{Type: strconv.Itoa(i)}
	}
	names := func(rs []*Record) string {
		var s []string
		for _, x := range rs {
			s = append(s, x.Type)
		}
		return strings.Join(s, ",")
	}
	r.pushBack(recs[0])
	r.pushBack(recs[1])
	r.pushBack(recs[2])
	got := r.popFront(nil, 2) // 0,1 out; 2 left
	r.pushBack(recs[3])
	r.pushBack(recs[4]) // wraps
	r.pushFront(got)    // 0,1 back in front
	if r.len() != 5 {
		t.Fatalf("len %d, want 5", r.len())
	}
	if s := names(r.popFront(nil, 10)); s != "0,1,2,3,4" || r.len() != 0 {
		t.Fatalf("ring order %s, len %d", s, r.len())
	}
}
