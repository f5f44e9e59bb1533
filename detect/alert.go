package detect

import (
	"hash"
	"hash/fnv"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/echowatch/echowatch/capture"
)

// Alert is one report about an incident: an EVE "alert" event that
// anything reading Suricata's EVE JSON can take, with an "incident" object
// that carries the evidence. A detector reuses one Alert: an AlertWriter
// that keeps it past WriteAlert must copy it (Clone).
type Alert struct {
	Time time.Time // packet time at which the alert was raised
	// Src and Dst are the alert's endpoints; which is which depends on the
	// kind (see Incident). A zero port is left out of the JSON.
	Src, Dst netip.AddrPort
	Proto    uint8 // capture.ProtoUDP or capture.ProtoTCP
	VLANs    []uint16
	// CommunityID is set when the alert is about one flow or endpoint
	// pair (loop, exposed).
	CommunityID string
	Host        string // the sensor's name; empty leaves "host" out
	Signature   *Signature
	Severity    int // the signature's, or 1 for outbound reflection
	// CaptureFile is the file that keeps the incident's first packets
	// (--evidence-dir); empty when none is kept.
	CaptureFile string
	// Tunnel is the encapsulation the incident's latest packet came in,
	// like VLANs (Depth 0: none).
	Tunnel capture.Tunnel
	// Tenant is the tenant whose traffic the incident is (Packet.Tenant):
	// 0 when the sensor does not keep tenants apart.
	Tenant   uint32
	Incident Incident

	// info is the kind's description, from the detector that raised the
	// alert; nil in alerts made elsewhere, which Incident.Kind describes.
	info kindInfo
}

// Incident is the "incident" object of an alert.
type Incident struct {
	ID        string // stable: derived from kind, key and first-seen time
	Kind      Kind
	Phase     Phase
	FirstSeen time.Time
	LastSeen  time.Time
	Packets   uint64
	Bytes     uint64
	// PPS and BPS are the current rates over the kind's window, PeakPPS
	// and PeakBPS the highest seen during the incident.
	PPS, BPS, PeakPPS, PeakBPS float64
	Direction                  string // inbound, outbound, internal or unknown
	Advice                     string
	// Sampling and Exporters say how router telemetry reported the
	// incident's traffic, when it came in any (capture.Sampled):
	// Sampling.Rate is 0 for an incident seen in captured packets only.
	// Exporters lists at most four routers that reported it, the busiest
	// first; Packets, Bytes and the rates are then estimates, the
	// sampling rate applied.
	Sampling  Sampling
	Exporters []Exporter

	// reflection: the victim (an address, or a prefix for a prefix-wide
	// incident), the busiest reflectors (at most 10), their distinct count,
	// the services abused and, for a prefix, its distinct hosts hit.
	Victim         netip.Prefix
	Reflectors     []Reflector
	ReflectorCount int
	Services       []string
	Hosts          int

	// loop: the two endpoints and the traffic each way (Directions[0] from
	// Endpoints[0] to Endpoints[1]).
	Endpoints  [2]netip.AddrPort
	Directions [2]DirectionRate

	// spoofed_flood: the target, the distinct sources of the incident (an
	// estimate) and the packets of each kind of evidence.
	Target          netip.Addr
	DistinctSources int
	Evidence        Evidence

	// scan: the distinct hosts probed, the ports and the tool recognised
	// from its probes ("nmap", or "unknown").
	Targets int
	Ports   []uint16
	Tool    string

	// exposed: the service that answered ("echo"), and the packets of the
	// finding to it and from it.
	Service           string
	Requests, Replies uint64
}

// Headline is an incident's facts that a summary of incidents shows, as
// its kind has them: a kind sets only its own members, and the JSON leaves
// the others out.
type Headline struct {
	// Detail says them in a few words: "3 reflectors, 2 hosts hit".
	Detail          string   `json:"-"`
	ReflectorCount  *int     `json:"reflector_count,omitempty"`
	Hosts           *int     `json:"hosts,omitempty"`
	DistinctSources *int     `json:"distinct_sources,omitempty"`
	Targets         *int     `json:"targets,omitempty"`
	Ports           []uint16 `json:"ports,omitempty"`
	Tool            string   `json:"tool,omitempty"`
	Endpoints       []string `json:"endpoints,omitempty"`
	Service         string   `json:"service,omitempty"`
}

// plural writes a count of things: "1 host", "3 hosts".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// Reflector is one reflector of a reflection incident.
type Reflector struct {
	Addr    netip.Addr
	Port    uint16
	Packets uint64
	Bytes   uint64
}

// Sampling is how telemetry sampled an incident's traffic: the format of
// its latest packet of telemetry, and the highest sampling rate seen (one
// packet in Rate; 1 for flow records of every packet). Rate 0: none.
type Sampling struct {
	Format capture.TelemetryFormat
	Rate   uint32
}

// Estimated reports whether the incident's counts are estimates: the
// routers looked at only some of its packets.
func (s Sampling) Estimated() bool { return s.Rate > 1 }

// Exporter is a router whose telemetry reported an incident's traffic.
type Exporter struct {
	Addr netip.Addr
	// InIf and OutIf are the ifIndex where its latest packet of the
	// incident entered and left the router; 0 when it did not say.
	InIf, OutIf uint32
	// Packets is what it reported of the incident, the sampling rate
	// applied.
	Packets uint64
}

// DirectionRate is the traffic one way between a loop's endpoints.
type DirectionRate struct {
	Packets, Bytes uint64
	PPS, BPS       float64
}

// Evidence counts an spoofed flood's packets by why they look forged.
type Evidence struct {
	Bogon        uint64 // source never valid on the wire (RFC 6890), or private from outside home_net
	Land         uint64 // source equal to destination
	RandomSource uint64 // packets of windows that were random-source floods
}

// EventMeta returns the alert's EVE event_type, "alert", and its packet
// time.
func (a *Alert) EventMeta() (eventType string, t time.Time) { return "alert", a.Time }

// Kind returns the kind of incident the alert reports.
func (a *Alert) Kind() Kind { return a.Incident.Kind }

// Phase returns the incident's phase.
func (a *Alert) Phase() Phase { return a.Incident.Phase }

// SignatureID returns the alert's signature id.
func (a *Alert) SignatureID() uint32 { return a.Signature.ID }

// ID returns the incident's id.
func (a *Alert) ID() string { return a.Incident.ID }

// Key returns what the incident is about, as a string: the victim address
// or prefix for a reflection ("192.0.2.10", "198.51.100.0/24"), the
// endpoint pair for a loop ("192.0.2.7:7-192.0.2.19:19"), the target for a
// spoofed flood, the protocol and scanner for a scan ("UDP/203.0.113.9")
// and the protocol and service for an exposed service ("TCP/192.0.2.7:7"), then
// the tenant unless it is 0 ("192.0.2.10 tenant 42"). Sinks use it as a
// message key, so all alerts of one incident stay together; with the kind
// and first_seen it determines the incident id.
func (a *Alert) Key() string { return withTenant(a.kindInfo().key(a), a.Tenant) }

// kindInfo returns the description of the alert's kind.
func (a *Alert) kindInfo() kindInfo {
	if a.info != nil {
		return a.info
	}
	return a.Incident.Kind.info()
}

// KindName returns the name of the alert's kind as EVE and the text line
// write it ("reflection"), also for a kind the built-in table does not know.
func (a *Alert) KindName() string { return a.kindInfo().name() }

// Headline returns the incident's facts that its kind's summary shows,
// the caller's own copy.
func (a *Alert) Headline() Headline { return a.kindInfo().headline(a) }

// Clone returns a deep copy of the alert, for writers that keep it.
func (a *Alert) Clone() *Alert {
	c := *a
	c.VLANs = append([]uint16(nil), a.VLANs...)
	c.Incident.Reflectors = append([]Reflector(nil), a.Incident.Reflectors...)
	c.Incident.Services = append([]string(nil), a.Incident.Services...)
	c.Incident.Ports = append([]uint16(nil), a.Incident.Ports...)
	c.Incident.Exporters = append([]Exporter(nil), a.Incident.Exporters...)
	return &c
}

// AppendEVE appends the alert as one EVE JSON object, with a fixed key
// order.
func (a *Alert) AppendEVE(b []byte) []byte {
	in := &a.Incident
	b = append(b, `{"timestamp":`...)
	b = appendTime(b, a.Time)
	b = append(b, `,"event_type":"alert","flow_id":`...)
	b = strconv.AppendUint(b, a.FlowID(), 10)
	b = append(b, `,"src_ip":`...)
	b = appendJSONString(b, a.Src.Addr().String())
	if a.Src.Port() != 0 {
		b = append(b, `,"src_port":`...)
		b = strconv.AppendUint(b, uint64(a.Src.Port()), 10)
	}
	b = append(b, `,"dest_ip":`...)
	b = appendJSONString(b, a.Dst.Addr().String())
	if a.Dst.Port() != 0 {
		b = append(b, `,"dest_port":`...)
		b = strconv.AppendUint(b, uint64(a.Dst.Port()), 10)
	}
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, protoName(a.Proto))
	if len(a.VLANs) > 0 {
		b = append(b, `,"vlan":[`...)
		for i, v := range a.VLANs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(v), 10)
		}
		b = append(b, ']')
	}
	if a.CommunityID != "" {
		b = append(b, `,"community_id":`...)
		b = appendJSONString(b, a.CommunityID)
	}
	if a.Host != "" {
		b = append(b, `,"host":`...)
		b = appendJSONString(b, a.Host)
	}
	if a.CaptureFile != "" {
		b = append(b, `,"capture_file":`...)
		b = appendJSONString(b, a.CaptureFile)
	}

	s := a.Signature
	b = append(b, `,"alert":{"action":"allowed","gid":`...)
	b = strconv.AppendUint(b, GID, 10)
	b = append(b, `,"signature_id":`...)
	b = strconv.AppendUint(b, uint64(s.ID), 10)
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, uint64(s.Rev), 10)
	b = append(b, `,"signature":`...)
	b = appendJSONString(b, s.Msg)
	b = append(b, `,"category":`...)
	b = appendJSONString(b, s.Category)
	b = append(b, `,"severity":`...)
	b = strconv.AppendInt(b, int64(a.Severity), 10)
	source, target := a.kindInfo().sides(a)
	b = appendSide(b, "source", source)
	b = appendSide(b, "target", target)
	b = append(b, `,"metadata":{"mitre_tactic_id":[`...)
	b = appendJSONString(b, s.TacticID)
	b = append(b, `],"mitre_tactic_name":[`...)
	b = appendJSONString(b, s.TacticName)
	b = append(b, `],"mitre_technique_id":[`...)
	b = appendJSONString(b, s.TechniqueID)
	b = append(b, `],"mitre_technique_name":[`...)
	b = appendJSONString(b, s.TechniqueName)
	b = append(b, `]}}`...)
	b = appendTunnelEVE(b, &a.Tunnel)

	b = append(b, `,"incident":{"id":`...)
	b = appendJSONString(b, in.ID)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, a.kindInfo().name())
	b = append(b, `,"phase":`...)
	b = appendJSONString(b, in.Phase.String())
	b = append(b, `,"first_seen":`...)
	b = appendTime(b, in.FirstSeen)
	b = append(b, `,"last_seen":`...)
	b = appendTime(b, in.LastSeen)
	b = appendUintField(b, "packets", in.Packets)
	b = appendUintField(b, "bytes", in.Bytes)
	b = appendRateField(b, "pps", in.PPS)
	b = appendRateField(b, "bps", in.BPS)
	b = appendRateField(b, "peak_pps", in.PeakPPS)
	b = appendRateField(b, "peak_bps", in.PeakBPS)
	b = append(b, `,"direction":`...)
	b = appendJSONString(b, in.Direction)
	b = appendIncidentTunnel(b, a.Tenant, &a.Tunnel)
	b = appendIncidentTelemetry(b, in)

	b = a.kindInfo().appendEVE(b, a)
	b = append(b, `,"advice":`...)
	b = appendJSONString(b, in.Advice)
	return append(b, "}}"...)
}

// appendSide appends alert.source or alert.target, as Suricata writes
// them: the address, and the port unless it is 0.
func appendSide(b []byte, name string, ap netip.AddrPort) []byte {
	if !ap.Addr().IsValid() {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":{"ip":`...)
	b = appendJSONString(b, ap.Addr().String())
	if ap.Port() != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(ap.Port()), 10)
	}
	return append(b, '}')
}

// FlowID returns the alert's flow_id: a number that every alert of the
// incident's key shares (its kind and Key), as every record of one flow
// shares Suricata's, for tools that correlate on it (EveBox, Elastic's
// Suricata integration, Arkime). It fits in 51 bits, so that JSON readers
// that hold numbers as doubles read it exactly.
func (a *Alert) FlowID() uint64 {
	return keyHash(a.KindName(), a.Key()).Sum64() & (1<<51 - 1)
}

// keyHash returns an FNV-1a hash that has taken an incident's kind and
// key, which the incident id and the flow_id derive from.
func keyHash(kind, key string) hash.Hash64 {
	h := fnv.New64a()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h
}

// AppendText appends the alert as one readable line with the same facts.
func (a *Alert) AppendText(b []byte) []byte {
	in := &a.Incident
	b = appendTimeText(b, a.Time)
	b = append(b, " ["...)
	b = strconv.AppendUint(b, GID, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(a.Signature.ID), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(a.Signature.Rev), 10)
	b = append(b, "] "...)
	b = a.kindInfo().appendText(b, a)
	b = append(b, ' ')
	b = append(b, in.Direction...)
	if a.Tunnel.Depth > 0 {
		b = append(b, " via "...)
		b = a.AppendTunnel(b)
	}
	if a.Tenant != 0 {
		b = append(b, " tenant "...)
		b = strconv.AppendUint(b, uint64(a.Tenant), 10)
	}
	b = append(b, " id "...)
	b = append(b, in.ID...)
	if a.CaptureFile != "" {
		b = append(b, " packets in "...)
		b = append(b, a.CaptureFile...)
	}
	if in.Sampling.Rate != 0 {
		b = append(b, " ["...)
		b = a.AppendTelemetry(b)
		b = append(b, ']')
	}
	return b
}

// appendRatesText appends the current and peak rates of an incident
// that has them, for the text line.
func appendRatesText(b []byte, in *Incident) []byte {
	b = append(b, ' ')
	b = appendRate(b, in.PPS)
	b = append(b, " pps "...)
	b = appendBits(b, in.BPS)
	b = append(b, " (peak "...)
	b = appendRate(b, in.PeakPPS)
	b = append(b, " pps "...)
	b = appendBits(b, in.PeakBPS)
	return append(b, ')')
}

// unknownKind describes a Kind that names no kind: its alerts have only
// the members every kind has.
type unknownKind struct{}

func (unknownKind) kind() Kind                                     { return NumKinds }
func (unknownKind) name() string                                   { return "unknown" }
func (unknownKind) key(a *Alert) string                            { return protoName(a.Proto) + "/" + a.Src.String() }
func (unknownKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }
func (unknownKind) appendEVE(b []byte, _ *Alert) []byte            { return b }
func (unknownKind) appendText(b []byte, a *Alert) []byte           { return appendRatesText(b, &a.Incident) }
func (unknownKind) headline(*Alert) Headline                       { return Headline{} }

// protoName names an IP protocol by its IANA keyword, as Suricata's EVE
// does: the alerts' UDP and TCP, and the protocols that carry tunnels.
func protoName(p uint8) string {
	switch p {
	case capture.ProtoUDP:
		return "UDP"
	case capture.ProtoTCP:
		return "TCP"
	case 4:
		return "IPv4"
	case 41:
		return "IPv6"
	case 47:
		return "GRE"
	}
	return strconv.Itoa(int(p))
}

// suricataTime is Suricata's EVE timestamp layout before the zone, which
// is always UTC here.
const suricataTime = "2006-01-02T15:04:05.000000"

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = appendTimeText(b, t)
	return append(b, '"')
}

func appendTimeText(b []byte, t time.Time) []byte {
	b = t.UTC().AppendFormat(b, suricataTime)
	return append(b, "+0000"...)
}

func appendUintField(b []byte, name string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func appendRateField(b []byte, name string, v float64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendRate(b, v)
}

// appendRate appends a rate rounded to one decimal, without a trailing
// ".0", so that the JSON is stable across platforms.
func appendRate(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.AppendFloat(b, math.Round(v*10)/10, 'f', -1, 64)
}

// appendBits appends a bit rate with a unit (bit/s, kbit/s, Mbit/s, Gbit/s).
func appendBits(b []byte, v float64) []byte {
	units := [...]string{" bit/s", " kbit/s", " Mbit/s", " Gbit/s"}
	u := 0
	for v >= 1000 && u < len(units)-1 {
		v /= 1000
		u++
	}
	b = appendRate(b, v)
	return append(b, units[u]...)
}

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and replacing invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
