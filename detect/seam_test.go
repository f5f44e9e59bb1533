package detect

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// This file adds a sixth detector, memcached amplification, to an Engine
// without an edit anywhere else: its ports, packet handler, table, stats,
// EVE members and text line all live here. If a test here needs a change
// outside this file, the seam has a leak.

// kindMemcached follows the built-in kinds, as newEngine requires.
const kindMemcached = NumKinds

// memcached detects UDP replies from memcached (port 11211) flooding a
// victim at pps packets per second or more, over the reflection window.
type memcached struct {
	pps     float64
	sig     Signature
	r       *reporter
	window  time.Duration
	watched PortSet
	victims *table[netip.Addr, memcachedVictim]
}

var _ detector = (*memcached)(nil)

func newMemcached(pps float64) *memcached {
	return &memcached{pps: pps, sig: Signature{ID: 9000100, Rev: 1,
		Msg: "ECHOWATCH memcached amplification toward victim", Category: "Attempted Denial of Service",
		Severity: 2, TacticID: "TA0040", TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification",
		Advice: "Filter UDP from source port 11211 toward the victim."}}
}

func (d *memcached) info() kindInfo { return memcachedKind{} }

func (d *memcached) setup(_ *Config, r *reporter) error {
	d.r = r
	var err error
	d.victims, err = newTable("memcached.victims", 64, func(a netip.Addr) uint64 { return hashAddr(a, 1) }, 0,
		func(v *memcachedVictim) bool { return r.evicted(v) })
	return err
}

func (d *memcached) configure(c *Config, _ *settings) {
	d.window = c.Reflection.Window
	d.watched = *NewPortSet(11211)
}

func (d *memcached) wants() wanted { return wanted{from: &d.watched} }

func (d *memcached) packet(pv *view) {
	p := pv.p
	if p.Proto != capture.ProtoUDP || p.SrcPort != 11211 {
		return
	}
	v, made := d.victims.getOrAdd(p.Dst, p.Timestamp)
	if v == nil {
		return
	}
	if made {
		*v = memcachedVictim{d: d, addr: p.Dst}
	}
	d.r.see(&v.t, p, d.window)
	v.m.add(p.Timestamp, d.window, weigh(p))
	v.server = p.SrcAddrPort()
	d.r.check(v, p.Timestamp)
}

func (d *memcached) tables(ts []TableStats) []TableStats { return append(ts, d.victims.stats()) }

// memcachedVictim is the state of one victim.
type memcachedVictim struct {
	d      *memcached
	addr   netip.Addr
	t      track
	m      meter
	server netip.AddrPort // the latest
}

func (v *memcachedVictim) lifecycle() *track { return &v.t }
func (v *memcachedVictim) kind() Kind        { return kindMemcached }
func (v *memcachedVictim) key() string       { return v.addr.String() }
func (v *memcachedVictim) reset()            {}

func (v *memcachedVictim) measure(now time.Time) (bool, float64, float64) {
	v.m.advance(now, v.d.window)
	pps, bps := v.m.rate(v.d.window)
	return pps >= v.d.pps, pps, bps
}

func (v *memcachedVictim) describe(a *Alert) {
	a.Src, a.Dst, a.Proto = v.server, netip.AddrPortFrom(v.addr, 0), capture.ProtoUDP
	a.Signature = &v.d.sig
	a.Incident.Victim = netip.PrefixFrom(v.addr, v.addr.BitLen())
	a.Incident.Direction = v.d.r.direction(v.server.Addr(), v.addr)
}

// memcachedKind renders memcached incidents.
type memcachedKind struct{}

func (memcachedKind) kind() Kind                                     { return kindMemcached }
func (memcachedKind) name() string                                   { return "memcached" }
func (memcachedKind) key(a *Alert) string                            { return a.Incident.Victim.Addr().String() }
func (memcachedKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }

func (memcachedKind) appendEVE(b []byte, a *Alert) []byte {
	b = append(b, `,"victim":`...)
	b = appendJSONString(b, a.Incident.Victim.Addr().String())
	b = append(b, `,"server":`...)
	return appendJSONString(b, a.Src.String())
}

func (memcachedKind) appendText(b []byte, a *Alert) []byte {
	b = append(b, "memcached amplification "...)
	b = append(b, a.Incident.Phase.String()...)
	b = append(b, " victim "...)
	b = append(b, a.Incident.Victim.Addr().String()...)
	b = append(b, " from "...)
	b = append(b, a.Src.String()...)
	return appendRatesText(b, &a.Incident)
}

func (memcachedKind) headline(a *Alert) Headline { return Headline{Detail: "from " + a.Src.String()} }

// TestExtraDetector runs the memcached detector beside the built-in ones:
// it raises its incident, renders it and counts it, and the built-in
// detectors still see their packets.
func TestExtraDetector(t *testing.T) {
	out := &sink{}
	eng, err := newEngine(homeConfig(), out, newMemcached(50))
	if err != nil {
		t.Fatal(err)
	}
	flows, err := NewFlows(FlowConfig{Ports: eng.FlowPorts()})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, flows: flows, eng: eng, out: out}
	if _, err := newEngine(homeConfig(), out, newMemcached(50), newMemcached(50)); err == nil {
		t.Error("two detectors of one kind: no error")
	}
	// 100 replies a second from one memcached server for 10 s, and an
	// echo reflection toward another victim meanwhile.
	h.feed(every(at(0), 100, 1000, func(_ int, ts time.Time) *capture.Packet {
		return udp(ts, "203.0.113.5:11211", "10.1.0.7:41000", make([]byte, 1400))
	})...)
	h.feed(reflected(at(10*time.Second), 200, 1000, 10, "10.1.0.10")...)
	h.flush()

	var starts []*Alert
	for _, a := range out.alerts {
		if a.Phase() == PhaseStart {
			starts = append(starts, a)
		}
	}
	if len(starts) != 2 || starts[0].Kind() != kindMemcached || starts[1].Kind() != KindReflection {
		t.Fatalf("alerts:\n%s", strings.Join(out.lines, "\n"))
	}
	a := starts[0]
	if a.KindName() != "memcached" { // what syslog and CEF print
		t.Errorf("KindName() = %q, want memcached", a.KindName())
	}
	wantEVE := `{"timestamp":"2024-01-01T00:00:02.000000+0000","event_type":"alert",` +
		`"flow_id":` + strconv.FormatUint(a.FlowID(), 10) + `,` +
		`"src_ip":"203.0.113.5","src_port":11211,"dest_ip":"10.1.0.7","proto":"UDP",` +
		`"alert":{"action":"allowed","gid":1,"signature_id":9000100,"rev":1,` +
		`"signature":"ECHOWATCH memcached amplification toward victim","category":"Attempted Denial of Service",` +
		`"severity":2,"source":{"ip":"203.0.113.5","port":11211},"target":{"ip":"10.1.0.7"},"metadata":{"mitre_tactic_id":["TA0040"],"mitre_tactic_name":["Impact"],` +
		`"mitre_technique_id":["T1498.002"],"mitre_technique_name":["Reflection Amplification"]}},` +
		`"incident":{"id":"` + a.Incident.ID + `","kind":"memcached","phase":"start",` +
		`"first_seen":"2024-01-01T00:00:00.000000+0000","last_seen":"2024-01-01T00:00:02.000000+0000",` +
		`"packets":201,"bytes":289842,"pps":50,"bps":576800,"peak_pps":50,"peak_bps":576800,` +
		`"direction":"inbound","victim":"10.1.0.7","server":"203.0.113.5:11211",` +
		`"advice":"Filter UDP from source port 11211 toward the victim."}}`
	if got := string(a.AppendEVE(nil)); got != wantEVE {
		t.Errorf("EVE:\n got %s\nwant %s", got, wantEVE)
	}
	wantText := "2024-01-01T00:00:02.000000+0000 [1:9000100:1] memcached amplification start " +
		"victim 10.1.0.7 from 203.0.113.5:11211 50 pps 576.8 kbit/s (peak 50 pps 576.8 kbit/s) inbound id " + a.Incident.ID
	if got := string(a.AppendText(nil)); got != wantText {
		t.Errorf("text:\n got %s\nwant %s", got, wantText)
	}
	if got, want := a.Key(), "10.1.0.7"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	if got, want := a.Headline().Detail, "from 203.0.113.5:11211"; got != want {
		t.Errorf("headline %q, want %q", got, want)
	}
	if a.Incident.ID != incidentID("memcached", "10.1.0.7", at(0)) {
		t.Errorf("id %s is not the memcached incident's", a.Incident.ID)
	}

	st := eng.Stats()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"memcached":{"incidents":1,"start":1,"update":0,"end":1,"suppressed":0}`,
		`"reflection":{"incidents":1,"start":1,"update":0,"end":1,"suppressed":0}`,
		`{"name":"memcached.victims","len":1,"cap":64,"evicted":0,"rejected":0}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("stats lack %s:\n%s", want, b)
		}
	}
}
