package detect

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	"github.com/echowatch/echowatch/capture"
)

// Router telemetry. A sensor fed sFlow samples or NetFlow/IPFIX records
// (capture.Sampled) sees traffic through the routers that exported it;
// its incidents say which routers and interfaces saw their traffic, so
// that the operator knows where to filter, and how it was sampled, so
// that the counts are read as the estimates they are. Detection itself
// weighs the packets (see weigh).

// telemetryExporters is how many exporters a track notes: the routers
// that carry an attack toward one victim are few, and the fifth and later
// ones are left out of its alerts (they still count).
const telemetryExporters = 4

// telemetry is what a track notes of the telemetry its activity came in:
// each exporter's id (the reporter's exporterNames names it), the ifIndex
// its latest packet entered and left by, and the packets it reported; the
// highest sampling rate and the latest packet's format. It is 80 bytes in
// the track, not a pointer, so that noting costs no allocation and
// entries that tables reuse keep it; the exporters are 2-byte ids rather
// than 24-byte addresses so that every table's entry stays within the
// cost FitMemory sizes it by. rate 0: the activity saw no telemetry, and
// the zero value is what a captured packet leaves.
type telemetry struct {
	packets [telemetryExporters]uint64
	in, out [telemetryExporters]uint32
	id      [telemetryExporters]exporterID // 0: the slot is free
	rate    uint32
	format  capture.TelemetryFormat
}

// noteTelemetry notes in t where p, a packet of telemetry, came from.
func (r *reporter) noteTelemetry(t *track, p *capture.Packet) {
	t.tel.note(&p.Sample, r.exporters.id(p.Sample.Exporter))
}

// note records a packet of telemetry s, from the exporter named id (0:
// none, or one exporterNames does not name).
func (t *telemetry) note(s *capture.Sampled, id exporterID) {
	t.rate = max(t.rate, s.Rate, 1) // unknown: unsampled, as records often are
	t.format = s.Format
	if id == 0 {
		return
	}
	for i, x := range t.id {
		if x == id || x == 0 {
			t.id[i], t.in[i], t.out[i] = id, s.InIf, s.OutIf
			t.packets[i] = sat(t.packets[i], s.Packets)
			return
		}
	}
}

// exporterID names an exporter in a reporter's exporterNames: its index
// there plus one.
type exporterID uint16

// maxExporters bounds exporterNames. Exporters are a network's routers,
// a few to a few hundred, but anyone can send a collector datagrams: past
// the bound, new exporters are counted in their tracks but not named.
const maxExporters = 4096

// exporterNames gives each exporter seen an id, for the tracks to note it
// by. It only grows, up to maxExporters: the ids in tracks stay valid.
type exporterNames struct {
	addrs []netip.Addr // by id-1
	ids   map[netip.Addr]exporterID
	// last is the exporter of the latest lookup: telemetry comes in
	// datagrams of many samples from one router, and one packet is
	// looked up once for each entry that counts it.
	last   netip.Addr
	lastID exporterID
}

// id returns a's id, giving it one if it has none; 0 for an invalid
// address (a packet that names no exporter) or once the names are full.
func (n *exporterNames) id(a netip.Addr) exporterID {
	if n.lastID != 0 && a == n.last {
		return n.lastID
	}
	if !a.IsValid() {
		return 0
	}
	id, ok := n.ids[a]
	if !ok {
		if len(n.addrs) >= maxExporters {
			return 0
		}
		if n.ids == nil {
			n.ids = make(map[netip.Addr]exporterID)
		}
		n.addrs = append(n.addrs, a)
		id = exporterID(len(n.addrs))
		n.ids[a] = id
	}
	n.last, n.lastID = a, id
	return id
}

// addr returns the address of id, which is not 0.
func (n *exporterNames) addr(id exporterID) netip.Addr { return n.addrs[id-1] }

// describeTelemetry fills in's sampling and exporters from t, the busiest
// exporter first (ties by address).
func (r *reporter) describeTelemetry(in *Incident, t *telemetry) {
	in.Sampling = Sampling{Format: t.format, Rate: t.rate}
	for i, id := range t.id {
		if id != 0 {
			in.Exporters = append(in.Exporters, Exporter{Addr: r.exporters.addr(id),
				InIf: t.in[i], OutIf: t.out[i], Packets: t.packets[i]})
		}
	}
	slices.SortFunc(in.Exporters, func(a, b Exporter) int {
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
}

// appendIncidentTelemetry appends the incident's "sampling" and
// "exporters" members, when it saw telemetry:
//
//	"sampling":{"format":"sflow","rate":1000,"estimated":true},
//	"exporters":[{"address":"192.0.2.1","input_ifindex":3,"output_ifindex":7,"packets":12000}]
//
// estimated says the counts are estimates (a rate above 1); an ifIndex
// of 0, not known, is left out, and so are the exporters when none is
// named.
func appendIncidentTelemetry(b []byte, in *Incident) []byte {
	s := &in.Sampling
	if s.Rate == 0 {
		return b
	}
	b = append(b, `,"sampling":{"format":`...)
	b = appendJSONString(b, s.Format.String())
	b = appendUintField(b, "rate", uint64(s.Rate))
	b = append(b, `,"estimated":`...)
	b = strconv.AppendBool(b, s.Estimated())
	b = append(b, '}')
	if len(in.Exporters) == 0 {
		return b
	}
	b = append(b, `,"exporters":[`...)
	for i, x := range in.Exporters {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"address":"`...)
		b = x.Addr.AppendTo(b)
		b = append(b, '"')
		if x.InIf != 0 {
			b = appendUintField(b, "input_ifindex", uint64(x.InIf))
		}
		if x.OutIf != 0 {
			b = appendUintField(b, "output_ifindex", uint64(x.OutIf))
		}
		b = appendUintField(b, "packets", x.Packets)
		b = append(b, '}')
	}
	return append(b, ']')
}

// AppendTelemetry appends, in words, the telemetry the incident's traffic
// was seen through, as the text line, syslog and CEF say it: the format,
// the sampling rate as 1:N, and the busiest exporter with the ifIndex
// its latest packet entered (in) and left (out) by, and how many other
// exporters reported it:
//
//	sflow 1:1000 via 192.0.2.1 in 3 out 7
//	netflow9 1:1 via 192.0.2.1 in 3 and 1 more
//
// It appends nothing for an incident seen in captured packets only.
func (a *Alert) AppendTelemetry(b []byte) []byte {
	in := &a.Incident
	if in.Sampling.Rate == 0 {
		return b
	}
	b = append(b, in.Sampling.Format.String()...)
	b = append(b, " 1:"...)
	b = strconv.AppendUint(b, uint64(in.Sampling.Rate), 10)
	if len(in.Exporters) == 0 {
		return b
	}
	x := &in.Exporters[0]
	b = append(b, " via "...)
	b = x.Addr.AppendTo(b)
	if x.InIf != 0 {
		b = append(b, " in "...)
		b = strconv.AppendUint(b, uint64(x.InIf), 10)
	}
	if x.OutIf != 0 {
		b = append(b, " out "...)
		b = strconv.AppendUint(b, uint64(x.OutIf), 10)
	}
	if n := len(in.Exporters) - 1; n > 0 {
		b = append(b, " and "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, " more"...)
	}
	return b
}
