package main

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// chargen returns n bytes of the RFC 864 character stream starting at line
// start: 72-character lines of the 95 printable ASCII characters, each line
// starting one character further, ended by CR LF.
func chargen(start, n int) []byte {
	const printable, width = 95, 72
	b := make([]byte, 0, n)
	for line := start; len(b) < n; line++ {
		for i := 0; i < width && len(b) < n; i++ {
			b = append(b, byte(' '+(line+i)%printable))
		}
		b = append(b, '\r', '\n')
	}
	return b[:n]
}

// randomBytes returns n pseudo-random bytes.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// wakeOnLAN returns a Wake-on-LAN magic packet for mac: six 0xff bytes and
// the MAC sixteen times, followed by the SecureOn password when there is one
// (4 or 6 bytes).
func wakeOnLAN(mac net.HardwareAddr, password []byte) []byte {
	b := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for range 16 {
		b = append(b, mac...)
	}
	return append(b, password...)
}

// Probe payloads nmap sends to UDP port 7 (nmap-payloads): up to 7.93 an
// empty line pair, since 7.94 a "help" command.
var (
	nmapEchoPayload    = []byte("\r\n\r\n")
	nmapEchoPayload794 = []byte("help\r\n\r\n")
)

// Names the background and DNS captures look up (RFC 2606 names).
var dnsNames = []string{
	"www.example.com", "example.org", "mail.example.net", "api.example.com",
	"cdn.example.org", "ntp.example.com", "login.example.net", "static.example.com",
}

// dnsQuery returns a recursive A query for name.
func dnsQuery(id uint16, name string) []byte {
	return encode(&layers.DNS{
		ID: id, RD: true,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}},
	})
}

// dnsAnswer returns the answer to dnsQuery(id, name) with the given
// addresses; authoritative answers set AA, a resolver's set RA.
func dnsAnswer(id uint16, name string, authoritative bool, addrs ...netip.Addr) []byte {
	d := &layers.DNS{
		ID: id, QR: true, RD: !authoritative, RA: !authoritative, AA: authoritative,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}},
	}
	for _, a := range addrs {
		d.Answers = append(d.Answers, layers.DNSResourceRecord{
			Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 300, IP: a.AsSlice(),
		})
	}
	return encode(d)
}

// ntpTime converts a packet time to an NTP timestamp (seconds since 1900 in
// the high 32 bits, the fraction in the low 32).
func ntpTime(at time.Duration) layers.NTPTimestamp {
	const unixToNTP = 2208988800
	t := epoch.Add(at)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return layers.NTPTimestamp(uint64(t.Unix()+unixToNTP)<<32 | frac)
}

// ntpPacket returns an NTPv4 packet in mode (1 symmetric active, 2
// symmetric passive, 3 client, 4 server) sent at time at.
func ntpPacket(mode uint8, stratum uint8, at, origin time.Duration) []byte {
	n := &layers.NTP{
		Version: 4, Mode: layers.NTPMode(mode), Stratum: layers.NTPStratum(stratum),
		Poll: 6, Precision: -24, RootDelay: 0x00000120, RootDispersion: 0x00000210,
		// A stratum 1 server names its clock; others the address of
		// their upstream server.
		ReferenceID:        layers.NTPReferenceID(binary.BigEndian.Uint32([]byte{192, 0, 2, 123})),
		ReferenceTimestamp: ntpTime(at - 16*time.Second),
		TransmitTimestamp:  ntpTime(at),
	}
	if stratum == 1 {
		n.ReferenceID = layers.NTPReferenceID(binary.BigEndian.Uint32([]byte("GPS\x00")))
	}
	if mode != 3 {
		n.OriginTimestamp = ntpTime(origin)
		n.ReceiveTimestamp = ntpTime(at - 40*time.Microsecond)
	}
	return encode(n)
}
