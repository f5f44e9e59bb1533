package detect

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Exposed reports the hardening finding: a host seen answering on a
// service port, an exposed service. A UDP datagram from exposed.ports
// answering a request seen earlier on its flow, or a TCP SYN-ACK or data
// from exposed.ports on a flow whose first packet came from the client,
// shows the service is enabled. The finding has a start, no updates, and
// an end exposed.rearm later (or at the end of the input) with the
// requests the service took and the replies it sent meanwhile; the host,
// service and protocol raise no other finding while it is open.
//
// Requiring the request on the same flow means forged packets alone (a
// flood of fake SYN-ACKs from port 7) never raise findings, and the flow
// table bounds the work.
type Exposed struct {
	cfg      *ExposedConfig
	r        *reporter
	watched  PortSet // the services, as source ports
	allow    prefixSet
	services *table[exposedKey, exposedService]
}

// exposedKey is a service, its protocol and its tenant.
type exposedKey struct {
	host   netip.AddrPort
	proto  uint8
	tenant uint32
}

func (k exposedKey) hash() uint64 {
	return hashAddr(k.host.Addr(), seedExposed^uint64(k.host.Port())<<8^uint64(k.proto)^tenantSeed(k.tenant))
}

var _ detector = (*Exposed)(nil)

func (d *Exposed) info() kindInfo { return exposedKind{} }

func (d *Exposed) setup(sizes *Config, r *reporter) error {
	cfg := &sizes.Exposed
	d.r = r
	var err error
	d.services, err = newTable("exposed.findings", cfg.MaxFindings, exposedKey.hash, 0,
		func(e *exposedService) bool { return r.evicted(e) })
	return err
}

func (d *Exposed) configure(c *Config, s *settings) {
	d.cfg, d.watched, d.allow = &c.Exposed, s.exposedPorts, s.allow[KindExposed]
}

func (d *Exposed) wants() wanted { return wanted{from: &d.watched, to: &d.watched} }

func (d *Exposed) tables(ts []TableStats) []TableStats { return append(ts, d.services.stats()) }

// packet takes the TCP packets and the UDP packets not to a service port
// from one of its ports, with their flow, and those to one of its ports
// not from a service port: the requests an open finding counts.
func (d *Exposed) packet(pv *view) {
	p, f, dir := pv.p, pv.f, pv.dir
	if d.watched.Has(p.DstPort) && !pv.srcSvc {
		d.request(p)
	}
	if !d.watched.Has(p.SrcPort) || pv.dstSvc || f == nil || dir != FromResp || f.Packets[FromOrig] == 0 {
		return
	}
	if p.Proto == capture.ProtoTCP {
		syn := p.TCPFlags&(capture.TCPSyn|capture.TCPAck) == capture.TCPSyn|capture.TCPAck
		if !syn && !tcpData(p) {
			return
		}
	}
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	now := p.Timestamp
	k := exposedKey{p.SrcAddrPort(), p.Proto, p.Tenant}
	e, made := d.services.getOrAdd(k, now)
	if made {
		*e = exposedService{d: d, k: k}
	}
	if e.t.open {
		e.replies = sat(e.replies, weigh(p).packets)
		d.r.see(&e.t, p, 0)
		d.r.follow(&e.t)
		return
	}
	e.client = p.DstAddrPort()
	e.t.first, e.t.last = f.FirstSeen, now
	e.requests, e.replies = f.Packets[FromOrig], f.Packets[FromResp]
	e.t.packets = sat(e.requests, e.replies)
	e.t.bytes = sat(f.Bytes[FromOrig], f.Bytes[FromResp])
	e.t.nvlan, e.t.vlans = p.NumVLANs, p.VLANs
	e.t.tun.set(&p.Tunnel)
	// The flow's earlier packets left no note of where they came from:
	// the finding names this packet's exporter, with what it stands for.
	e.t.tel = telemetry{}
	if p.Sample.Packets != 0 {
		d.r.noteTelemetry(&e.t, p)
	}
	d.r.oneShot(e, now, d.cfg.Rearm)
}

// request counts p, a packet to a service port, in the service's open
// finding: a UDP datagram, a TCP SYN or data. The finding's evidence is
// the service's answers only, as it has always been.
func (d *Exposed) request(p *capture.Packet) {
	if p.Proto == capture.ProtoTCP && p.TCPFlags&(capture.TCPSyn|capture.TCPAck) != capture.TCPSyn && !tcpData(p) {
		return
	}
	e := d.services.get(exposedKey{p.DstAddrPort(), p.Proto, p.Tenant})
	if e == nil || !e.t.open || d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	e.requests = sat(e.requests, weigh(p).packets)
	d.r.see(&e.t, p, 0)
}

// tcpData reports whether p is a TCP segment that carries data, neither
// opening nor resetting its connection.
func tcpData(p *capture.Packet) bool {
	return p.TCPFlags&(capture.TCPSyn|capture.TCPRst) == 0 && p.PayloadLen > 0
}

// exposedService is one service seen answering.
type exposedService struct {
	d      *Exposed
	k      exposedKey
	t      track
	client netip.AddrPort // who it answered first
	// requests and replies count the packets of the finding to the service
	// and its answers: its first flow's, then each one while it is open.
	requests, replies uint64
}

var _ subject = (*exposedService)(nil)

func (e *exposedService) lifecycle() *track { return &e.t }
func (e *exposedService) kind() Kind        { return KindExposed }
func (e *exposedService) key() string {
	return withTenant(protoName(e.k.proto)+"/"+e.k.host.String(), e.k.tenant)
}

func (e *exposedService) measure(time.Time) (bool, float64, float64) { return false, 0, 0 }
func (e *exposedService) reset()                                     { e.requests, e.replies = 0, 0 }

func (e *exposedService) describe(a *Alert) {
	in := &a.Incident
	a.Src, a.Dst, a.Proto, a.Tenant = e.k.host, e.client, e.k.proto, e.k.tenant
	a.CommunityID = CommunityID(e.k.host, e.client, e.k.proto)
	a.Signature = sig(SIDExposedUDP)
	if e.k.proto == capture.ProtoTCP {
		a.Signature = sig(SIDExposedTCP)
	}
	in.Service = serviceName(e.k.host.Port())
	in.Requests, in.Replies = e.requests, e.replies
	// The request came from the client: that is the finding's direction.
	in.Direction = e.d.r.direction(e.client.Addr(), e.k.host.Addr())
}

// exposedKind describes exposed services to the renderers.
type exposedKind struct{}

func (exposedKind) kind() Kind   { return KindExposed }
func (exposedKind) name() string { return "exposed" }

// sides: the service that answers is what the finding is about, and
// whoever asked is the other end.
func (exposedKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Dst, a.Src }

func (exposedKind) key(a *Alert) string {
	return protoName(a.Proto) + "/" + a.Src.String()
}

func (exposedKind) appendEVE(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, `,"service":`...)
	b = appendJSONString(b, in.Service)
	b = appendUintField(b, "requests", in.Requests)
	return appendUintField(b, "replies", in.Replies)
}

func (exposedKind) appendText(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, "exposed "...)
	b = append(b, protoName(a.Proto)...)
	b = append(b, ' ')
	b = append(b, in.Service...)
	b = append(b, ' ')
	b = append(b, in.Phase.String()...)
	b = append(b, " on "...)
	b = append(b, a.Src.String()...)
	b = append(b, " answered "...)
	b = append(b, a.Dst.Addr().String()...)
	b = append(b, " ("...)
	b = appendCount(b, in.Requests, " request", " requests")
	b = append(b, ", "...)
	b = appendCount(b, in.Replies, " reply", " replies")
	return append(b, ')')
}

// appendCount appends n and the word for one or for several.
func appendCount(b []byte, n uint64, one, many string) []byte {
	b = strconv.AppendUint(b, n, 10)
	if n == 1 {
		return append(b, one...)
	}
	return append(b, many...)
}

func (exposedKind) headline(a *Alert) Headline {
	return Headline{Detail: a.Incident.Service, Service: a.Incident.Service}
}
