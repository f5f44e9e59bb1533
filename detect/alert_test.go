package detect

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// topKeys returns the keys of a JSON object in the order they appear.
func topKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestAlertEVE(t *testing.T) {
	cfg := homeConfig()
	cfg.SensorName = "edge \"1\"\n"
	h := newHarness(t, cfg)
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	h.feed(pingPong(at(time.Second), 40, 800, "10.1.0.19:19", "10.1.0.7:7", 64)...)
	h.flush()
	for _, line := range h.out.lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if m["host"] != "edge \"1\"\n" || m["event_type"] != "alert" {
			t.Errorf("host %q event_type %v", m["host"], m["event_type"])
		}
		ts, _ := m["timestamp"].(string)
		if _, err := time.Parse("2006-01-02T15:04:05.000000-0700", ts); err != nil || !strings.HasSuffix(ts, "+0000") {
			t.Errorf("timestamp %q: %v", ts, err)
		}
	}
	// The victim is hit on one port, from twelve reflectors: a dest_port,
	// but no one flow.
	want := "timestamp event_type flow_id src_ip src_port dest_ip dest_port proto host alert incident"
	if got := strings.Join(topKeys(t, h.out.lines[0]), " "); got != want {
		t.Errorf("reflection keys %q\nwant %q", got, want)
	}
	var loop string
	for _, l := range h.out.lines {
		if strings.Contains(l, `"kind":"loop"`) {
			loop = l
			break
		}
	}
	want = "timestamp event_type flow_id src_ip src_port dest_ip dest_port proto community_id host alert incident"
	if got := strings.Join(topKeys(t, loop), " "); got != want {
		t.Errorf("loop keys %q\nwant %q", got, want)
	}
	var m struct {
		Alert struct {
			Action      string
			GID         int
			SignatureID int `json:"signature_id"`
			Severity    int
			Metadata    map[string][]string
			Source      struct {
				IP   string
				Port int
			}
			Target struct {
				IP   string
				Port int
			}
		}
		FlowID   uint64 `json:"flow_id"`
		Incident struct {
			Kind, Phase, Victim, Direction, Advice string
			Reflectors                             []struct {
				IP      string
				Port    int
				Packets int
			}
			ReflectorCount int `json:"reflector_count"`
			Services       []string
			PPS            float64
		}
	}
	if err := json.Unmarshal([]byte(h.out.lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m.Alert.Action != "allowed" || m.Alert.GID != 1 || m.Alert.SignatureID != 9000001 || m.Alert.Severity != 2 ||
		m.Alert.Metadata["mitre_technique_id"][0] != "T1498.002" {
		t.Errorf("alert %+v", m.Alert)
	}
	// Suricata's attacker and victim: the busiest reflector, the victim.
	if m.Alert.Source.IP != in0(h).Src.Addr().String() || m.Alert.Source.Port != int(in0(h).Src.Port()) ||
		m.Alert.Target.IP != "10.1.0.10" || m.Alert.Target.Port != 40000 {
		t.Errorf("source %+v, target %+v", m.Alert.Source, m.Alert.Target)
	}
	if m.FlowID == 0 || m.FlowID >= 1<<51 || m.FlowID != h.out.alerts[len(h.out.alerts)-1].FlowID() && h.out.alerts[len(h.out.alerts)-1].Kind() == KindReflection {
		t.Errorf("flow_id %d", m.FlowID)
	}
	in := m.Incident
	if in.Kind != "reflection" || in.Phase != "start" || in.Victim != "10.1.0.10" || in.Direction != "inbound" ||
		len(in.Reflectors) != 10 || in.ReflectorCount != 12 || in.Advice == "" || in.PPS < 50 {
		t.Errorf("incident %+v", in)
	}
}

// in0 returns the first alert h received.
func in0(h *harness) *Alert { return h.out.alerts[0] }

// TestAlertOneFlow: a reflection from one reflector to one port of its
// victim is about one flow, and says which, as a loop does; every alert of
// an incident's key shares its flow_id, and another key has another.
func TestAlertOneFlow(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 4000, 1, "10.1.0.10")...)
	h.feed(reflected(at(20*time.Second), 800, 4000, 1, "10.1.0.11")...)
	h.flush()
	h.expect(
		"reflection/start/9000001 10.1.0.10", "reflection/start/9000001 10.1.0.11",
		"reflection/end/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.11",
	)
	a := h.out.alerts[0]
	want := CommunityID(netip.MustParseAddrPort("45.33.0.1:7"), netip.MustParseAddrPort("10.1.0.10:40000"), capture.ProtoUDP)
	if a.Dst.Port() != 40000 || a.CommunityID != want {
		t.Errorf("dest %v, community_id %q; want port 40000 and %q", a.Dst, a.CommunityID, want)
	}
	ids := []uint64{a.FlowID(), h.out.alerts[2].FlowID(), h.out.alerts[1].FlowID()}
	if ids[0] != ids[1] || ids[0] == ids[2] {
		t.Errorf("flow ids %v: want the start and end of 10.1.0.10 equal, 10.1.0.11 another", ids)
	}
}

func TestAlertText(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	h.flush()
	line := string(h.out.alerts[0].AppendText(nil))
	for _, want := range []string{
		"2024-01-01T00:00:00.", "+0000 [1:9000001:2] echo+chargen reflection start victim 10.1.0.10 from 12 reflectors busiest ",
		" pps ", "bit/s", " inbound id " + h.out.alerts[0].Incident.ID,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("text %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Error("text has a newline")
	}
}

func TestAppendBits(t *testing.T) {
	for v, want := range map[float64]string{0: "0 bit/s", 999: "999 bit/s", 1200: "1.2 kbit/s", 1.25e6: "1.3 Mbit/s", 3e9: "3 Gbit/s"} {
		if got := string(appendBits(nil, v)); got != want {
			t.Errorf("%v: %q, want %q", v, got, want)
		}
	}
}

func TestSignatureTable(t *testing.T) {
	seen := map[uint32]bool{}
	for i, s := range Signatures() {
		if s.ID != SIDReflection+uint32(i) || seen[s.ID] || s.Msg == "" || s.Advice == "" || s.Severity < 1 || s.Severity > 3 {
			t.Errorf("signature %d: %+v", i, s)
		}
		seen[s.ID] = true
		if got, ok := LookupSignature(s.ID); !ok || got.ID != s.ID {
			t.Errorf("lookup %d", s.ID)
		}
	}
	if fmt.Sprint(KindSpoofedFlood, PhaseUpdate) != "spoofed_flood update" {
		t.Error("names")
	}
}

func TestIncidentIDFromKey(t *testing.T) {
	// The id is derived from the kind, Key and first_seen: a consumer can
	// recompute it, and every kind's Key names its incident.
	h := newHarness(t, homeConfig())
	h.feed(mixed(60_000)...)
	h.feed(sweep(at(time.Minute), "81.2.0.66", 25, []int{7}, func(ts time.Time, src, dst string) *capture.Packet {
		return tcp(ts, src, dst, capture.TCPSyn, nil)
	})...)
	h.feed(tcp(at(2*time.Minute), "10.1.0.3:7", "81.2.0.66:45000", capture.TCPSyn|capture.TCPAck, nil))
	h.flush()
	kinds := map[Kind]bool{}
	for _, a := range h.out.alerts {
		kinds[a.Kind()] = true
		if id := incidentID(a.Kind().String(), a.Key(), a.Incident.FirstSeen); id != a.Incident.ID {
			t.Errorf("%s %s: id %s, recomputed %s", a.Kind(), a.Key(), a.Incident.ID, id)
		}
	}
	if len(kinds) != NumKinds {
		t.Errorf("kinds raised: %v", kinds)
	}
}

// TestIncidentIDMicroseconds: an incident's id depends on its first
// packet's time to the microsecond, as EVE prints it, so a live sensor's
// nanosecond timestamps and a replay of a microsecond recording of the
// same traffic give the same ids; another microsecond, another id.
func TestIncidentIDMicroseconds(t *testing.T) {
	us := time.Date(2024, 3, 19, 12, 0, 0, 123456000, time.UTC)
	id := incidentID(KindReflection.String(), "198.51.100.10", us)
	if got := incidentID(KindReflection.String(), "198.51.100.10", us.Add(789*time.Nanosecond)); got != id {
		t.Errorf("nanoseconds changed the id: %s, want %s", got, id)
	}
	if got := incidentID(KindReflection.String(), "198.51.100.10", us.Add(time.Microsecond)); got == id {
		t.Errorf("a microsecond later gave the same id %s", id)
	}
}

// TestHeadline checks each kind's facts for a summary of incidents: the
// detail words and the JSON members, only the kind's own.
func TestHeadline(t *testing.T) {
	ep := [2]netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:7"), netip.MustParseAddrPort("192.0.2.19:19")}
	for _, tc := range []struct {
		in           Incident
		detail, json string
	}{
		{Incident{Kind: KindReflection, ReflectorCount: 1}, "1 reflector", `{"reflector_count":1}`},
		{Incident{Kind: KindReflection, ReflectorCount: 3, Hosts: 2}, "3 reflectors, 2 hosts hit",
			`{"reflector_count":3,"hosts":2}`},
		{Incident{Kind: KindLoop, Endpoints: ep}, "ports 7 <-> 19", `{"endpoints":["192.0.2.7:7","192.0.2.19:19"]}`},
		{Incident{Kind: KindSpoofedFlood, DistinctSources: 1}, "~1 source", `{"distinct_sources":1}`},
		{Incident{Kind: KindScan, Targets: 20, Ports: []uint16{7, 19}, Tool: "nmap"}, "20 targets, nmap",
			`{"targets":20,"ports":[7,19],"tool":"nmap"}`},
		{Incident{Kind: KindExposed, Service: "echo"}, "echo", `{"service":"echo"}`},
		{Incident{Kind: NumKinds}, "", `{}`},
	} {
		a := &Alert{Incident: tc.in}
		l := a.Headline()
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if l.Detail != tc.detail || string(b) != tc.json {
			t.Errorf("%v: %q %s, want %q %s", tc.in.Kind, l.Detail, b, tc.detail, tc.json)
		}
		if len(tc.in.Ports) > 0 {
			a.Incident.Ports[0] = 0
			if l.Ports[0] == 0 {
				t.Errorf("%v: the headline shares the alert's ports", tc.in.Kind)
			}
		}
	}
}
