package detect

import (
	"net/netip"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// exposure reports the hardening finding: a host seen answering on a
// service port. A UDP datagram from exposed.ports answering a request seen
// earlier on its flow, or a TCP SYN-ACK or data from exposed.ports on a
// flow whose first packet came from the client, shows the service is
// enabled. Once per host, service and protocol per exposed.rearm.
//
// Requiring the request on the same flow means forged packets alone (a
// flood of fake SYN-ACKs from port 7) never raise findings, and the flow
// table bounds the work.
type exposure struct {
	cfg   *ExposedConfig
	r     *reporter
	ports PortSet
	allow prefixSet
	found *table[exposedKey, finding]
}

// exposedKey is a service, its protocol and its tenant.
type exposedKey struct {
	host   netip.AddrPort
	proto  uint8
	tenant uint32
}

func (k exposedKey) hash() uint64 {
	return hashAddr(k.host.Addr(), seedFinding^uint64(k.host.Port())<<8^uint64(k.proto)^tenantSeed(k.tenant))
}

func (d *exposure) init(cfg *ExposedConfig, r *reporter) error {
	d.r = r
	var err error
	d.found, err = newTable("exposed.findings", cfg.MaxFindings, exposedKey.hash, 0,
		func(e *finding) bool { return r.evicted(e) })
	return err
}

// packet takes a UDP packet that is not service-to-service (dstSvc says
// whether its destination port is a service port) or a TCP packet, with
// its flow.
func (d *exposure) packet(p *capture.Packet, f *Flow, dir Dir, dstSvc bool) {
	if !d.ports.Has(p.SrcPort) || dstSvc || f == nil || dir != FromResp || f.Packets[FromOrig] == 0 {
		return
	}
	if p.Proto == capture.ProtoTCP {
		syn := p.TCPFlags&(capture.TCPSyn|capture.TCPAck) == capture.TCPSyn|capture.TCPAck
		data := p.TCPFlags&(capture.TCPSyn|capture.TCPRst) == 0 && p.PayloadLen > 0
		if !syn && !data {
			return
		}
	}
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	now := p.Timestamp
	k := exposedKey{p.SrcAddrPort(), p.Proto, p.Tenant}
	e, made := d.found.getOrAdd(k, now)
	if made {
		*e = finding{d: d, k: k}
	}
	if e.t.rearmed(now, d.cfg.Rearm) {
		d.r.follow(&e.t)
		return
	}
	e.client = p.DstAddrPort()
	e.t.first, e.t.last = f.FirstSeen, now
	e.t.packets = f.Packets[FromOrig] + f.Packets[FromResp]
	e.t.bytes = f.Bytes[FromOrig] + f.Bytes[FromResp]
	e.t.nvlan, e.t.vlans = p.NumVLANs, p.VLANs
	e.t.tun.set(&p.Tunnel)
	d.r.oneShot(e, now, d.cfg.Rearm)
}

// finding is one service seen answering.
type finding struct {
	d      *exposure
	k      exposedKey
	t      track
	client netip.AddrPort // who it answered
}

var _ subject = (*finding)(nil)

func (e *finding) lifecycle() *track { return &e.t }
func (e *finding) kind() Kind        { return KindExposed }
func (e *finding) key() string {
	return withTenant(protoName(e.k.proto)+"/"+e.k.host.String(), e.k.tenant)
}

func (e *finding) measure(time.Time) (bool, float64, float64) { return false, 0, 0 }
func (e *finding) reset()                                     {}

func (e *finding) describe(a *Alert) {
	in := &a.Incident
	a.Src, a.Dst, a.Proto, a.Tenant = e.k.host, e.client, e.k.proto, e.k.tenant
	a.CommunityID = CommunityID(e.k.host, e.client, e.k.proto)
	a.Signature = sig(SIDExposedUDP)
	if e.k.proto == capture.ProtoTCP {
		a.Signature = sig(SIDExposedTCP)
	}
	in.Service = serviceName(e.k.host.Port())
	// The request came from the client: that is the exposure's direction.
	in.Direction = e.d.r.direction(e.client.Addr(), e.k.host.Addr())
}
