package sinks

import (
	"net/netip"
	"strconv"

	"github.com/echowatch/echowatch/capture"
)

// appendCEF appends r as an ArcSight Common Event Format record:
//
//	CEF:0|echowatch|echowatch|VERSION|SIGNATURE_ID|NAME|SEVERITY|EXTENSION
//
// Header fields escape '\' and '|'; extension values escape '\' and '='
// and write line breaks as \n and \r (CEF Implementation Standard).
func (s *Syslog) appendCEF(b []byte, r *Record) []byte {
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	b = append(b, "CEF:0|echowatch|echowatch|"...)
	b = appendCEFHeader(b, version)
	b = append(b, '|')
	a := r.Alert()
	if a == nil {
		b = appendCEFHeader(b, r.Type)
		b = append(b, "|echowatch "...)
		b = appendCEFHeader(b, r.Type)
		b = append(b, "|0|rt="...)
		b = strconv.AppendInt(b, r.Time.UnixMilli(), 10)
		b = appendCEFExt(b, "dvchost", s.cfg.Hostname)
		return appendCEFExt(b, "msg", string(r.EVE))
	}
	b = strconv.AppendUint(b, uint64(a.SignatureID()), 10)
	b = append(b, '|')
	b = appendCEFHeader(b, a.Signature.Msg)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(cefSeverity(a.Severity)), 10)
	b = append(b, "|rt="...)
	b = strconv.AppendInt(b, a.Time.UnixMilli(), 10)
	b = appendCEFExt(b, "dvchost", s.cfg.Hostname)
	b = appendCEFAddr(b, "src", "spt", a.Src)
	b = appendCEFAddr(b, "dst", "dpt", a.Dst)
	switch a.Proto {
	case capture.ProtoTCP:
		b = appendCEFExt(b, "proto", "TCP")
	case capture.ProtoUDP:
		b = appendCEFExt(b, "proto", "UDP")
	}
	b = appendCEFExt(b, "cat", a.Signature.Category)
	b = appendCEFExt(b, "act", "allowed")
	b = appendCEFExt(b, "externalId", a.ID())
	b = appendCEFExt(b, "cs1Label", "kind")
	b = appendCEFExt(b, "cs1", a.KindName())
	b = appendCEFExt(b, "cs2Label", "phase")
	b = appendCEFExt(b, "cs2", a.Phase().String())
	b = appendCEFExt(b, "cs3Label", "key")
	b = appendCEFExt(b, "cs3", a.Key())
	b = appendCEFExt(b, "cs4Label", "direction")
	b = appendCEFExt(b, "cs4", a.Incident.Direction)
	if a.Tunnel.Depth > 0 {
		// CEF has no field for an encapsulation: a custom string in the
		// text line's words.
		b = appendCEFExt(b, "cs5Label", "tunnel")
		b = appendCEFExt(b, "cs5", string(a.AppendTunnel(nil)))
	}
	if a.Incident.Sampling.Rate != 0 {
		// Nor for router telemetry: the text line's words again.
		b = appendCEFExt(b, "cs6Label", "telemetry")
		b = appendCEFExt(b, "cs6", string(a.AppendTelemetry(nil)))
	}
	if a.Tenant != 0 {
		b = append(b, " cn1Label=tenant cn1="...)
		b = strconv.AppendUint(b, uint64(a.Tenant), 10)
	}
	if a.CaptureFile != "" {
		b = appendCEFExt(b, "filePath", a.CaptureFile)
	}
	b = append(b, " cnt="...)
	b = strconv.AppendUint(b, a.Incident.Packets, 10)
	b = append(b, " in="...)
	b = strconv.AppendUint(b, a.Incident.Bytes, 10)
	return appendCEFExt(b, "msg", a.Incident.Advice)
}

// cefSeverity maps an alert's severity (1 high to 3 low) to CEF's 0 to 10.
func cefSeverity(sev int) int {
	switch sev {
	case 1:
		return 8
	case 2:
		return 5
	case 3:
		return 3
	}
	return 1
}

func appendCEFAddr(b []byte, addrKey, portKey string, ap netip.AddrPort) []byte {
	if !ap.Addr().IsValid() {
		return b
	}
	b = appendCEFExt(b, addrKey, ap.Addr().String())
	if ap.Port() != 0 {
		b = append(b, ' ')
		b = append(b, portKey...)
		b = append(b, '=')
		b = strconv.AppendUint(b, uint64(ap.Port()), 10)
	}
	return b
}

// appendCEFHeader appends a header field, escaping '\' and '|'; a header
// cannot hold a line break, so one becomes a space.
func appendCEFHeader(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|':
			b = append(b, '\\', c)
		case '\r', '\n':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendCEFExt appends " key=value", escaping the value; an empty value
// is left out.
func appendCEFExt(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '=':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
