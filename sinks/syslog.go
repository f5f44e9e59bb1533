package sinks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SyslogFormat is how a syslog output writes each message.
type SyslogFormat int

const (
	// RFC5424 messages carry the incident in structured data and the EVE
	// JSON as the message.
	RFC5424 SyslogFormat = iota
	// RFC3164 is the BSD format that old collectors read: a tag and the
	// EVE JSON.
	RFC3164
	// CEF is ArcSight's Common Event Format behind a BSD header, for SIEMs
	// that map it.
	CEF
)

// ParseSyslogFormat parses "5424", "3164" or "cef".
func ParseSyslogFormat(s string) (SyslogFormat, error) {
	switch strings.ToLower(s) {
	case "", "5424", "rfc5424":
		return RFC5424, nil
	case "3164", "rfc3164", "bsd":
		return RFC3164, nil
	case "cef":
		return CEF, nil
	}
	return 0, fmt.Errorf("sinks/syslog: unknown format %q (want 5424, 3164 or cef)", s)
}

// Facility numbers (RFC 5424 section 6.2.1) by name.
var facilities = map[string]int{
	"user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10, "security": 13,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseFacility parses a facility name ("local0") or number (1 to 23).
func ParseFacility(s string) (int, error) {
	if f, ok := facilities[strings.ToLower(s)]; ok {
		return f, nil
	}
	if f, err := strconv.Atoi(s); err == nil && f >= 1 && f <= 23 {
		return f, nil
	}
	return 0, fmt.Errorf("sinks/syslog: unknown facility %q (want local0 to local7, user, daemon, auth, security, or 1 to 23)", s)
}

// SyslogConfig is where and how a syslog output sends.
type SyslogConfig struct {
	// Network is "udp", "tcp" (RFC 6587 octet counting), "tls" (RFC 5425)
	// or "unix" (a local socket such as /dev/log).
	Network string
	// Addr is host:port, or the socket's path for "unix".
	Addr   string
	Format SyslogFormat
	// Facility is 1 to 23; 0 means local0 (16): a sensor never speaks for
	// the kernel.
	Facility int
	// Hostname is the HOSTNAME field: the sensor's name. Empty uses the
	// host name.
	Hostname string
	// AppName is the APP-NAME field (the tag in RFC 3164); default
	// "echowatch".
	AppName string
	// Version is echowatch's, for CEF's header.
	Version string
	// TLS configures "tls": the CA to trust, a client certificate, the
	// server name (TLSFiles.Config makes one from files). Nil trusts the
	// system's CAs and checks Addr's host.
	TLS *tls.Config
	// DialTimeout (default 10s) bounds a connection attempt and
	// WriteTimeout (default 30s) a write to a destination that does not
	// read.
	DialTimeout, WriteTimeout time.Duration
	// SettleTime is how long the peer of a TCP or TLS connection must have
	// acknowledged a message before it counts as delivered; a connection
	// that breaks sooner sends it again. Default 250ms.
	SettleTime time.Duration
}

// Syslog is the destination for an output to a syslog collector. It does
// not use log/syslog, which speaks neither RFC 5424 nor RFC 6587.
type Syslog struct {
	cfg    SyslogConfig
	host   string // HOSTNAME, made safe
	app    string
	procID string
}

var _ Dialer = (*Syslog)(nil)

// NewSyslog checks cfg and returns the destination; it does no I/O.
func NewSyslog(cfg SyslogConfig) (*Syslog, error) {
	switch cfg.Network {
	case "udp", "tcp", "tls":
		if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
			return nil, fmt.Errorf("sinks/syslog: address %q: want host:port", cfg.Addr)
		}
	case "unix":
		if cfg.Addr == "" {
			return nil, errors.New("sinks/syslog: unix needs a socket path")
		}
	default:
		return nil, fmt.Errorf("sinks/syslog: unknown network %q (want udp, tcp, tls or unix)", cfg.Network)
	}
	if cfg.Facility == 0 {
		cfg.Facility = 16
	}
	if cfg.Facility < 1 || cfg.Facility > 23 {
		return nil, fmt.Errorf("sinks/syslog: facility %d out of range (1 to 23)", cfg.Facility)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.AppName == "" {
		cfg.AppName = "echowatch"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.SettleTime <= 0 {
		cfg.SettleTime = 250 * time.Millisecond
	}
	if cfg.Network == "tls" {
		tc := cfg.TLS
		if tc == nil {
			tc, _ = TLSFiles{}.Config() // no file to read: no error
		}
		tc = tc.Clone()
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			tc.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		cfg.TLS = tc
	}
	return &Syslog{
		cfg:    cfg,
		host:   headerField(cfg.Hostname, 255),
		app:    headerField(cfg.AppName, 48),
		procID: strconv.Itoa(os.Getpid()),
	}, nil
}

// Dial connects to the collector.
func (s *Syslog) Dial(ctx context.Context) (Conn, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	switch s.cfg.Network {
	case "udp":
		c, err := d.DialContext(ctx, "udp", s.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("sinks/syslog: dial udp %s: %w", s.cfg.Addr, err)
		}
		return &datagramConn{s: s, c: c, max: maxUDP}, nil
	case "unix":
		c, err := d.DialContext(ctx, "unixgram", s.cfg.Addr)
		if err == nil {
			return &datagramConn{s: s, c: c, max: maxUnixgram}, nil
		}
		if !errors.Is(err, syscall.EPROTOTYPE) {
			return nil, fmt.Errorf("sinks/syslog: dial %s: %w", s.cfg.Addr, err)
		}
		c, err = d.DialContext(ctx, "unix", s.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("sinks/syslog: dial %s: %w", s.cfg.Addr, err)
		}
		return newStreamConn(s, c, nil, nil, false), nil
	}
	c, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sinks/syslog: dial %s: %w", s.cfg.Addr, err)
	}
	tcp, _ := c.(*net.TCPConn)
	counted := &countedConn{Conn: c}
	if s.cfg.Network == "tcp" {
		return newStreamConn(s, counted, tcp, counted, true), nil
	}
	tc := tls.Client(counted, s.cfg.TLS)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("sinks/syslog: tls handshake with %s: %w", s.cfg.Addr, err)
	}
	return newStreamConn(s, tc, tcp, counted, true), nil
}

// The largest message a datagram carries: UDP's limit over IPv4, and what
// Linux's default socket buffer lets through a unix datagram socket.
const (
	maxUDP      = 65507
	maxUnixgram = 200 << 10
)

// appendMessage appends r as one syslog message, without framing.
func (s *Syslog) appendMessage(b []byte, r *Record) []byte {
	switch s.cfg.Format {
	case RFC3164:
		b = s.appendBSDHeader(b, r)
		b = append(b, s.app...)
		b = append(b, '[')
		b = append(b, s.procID...)
		b = append(b, "]: "...)
		return append(b, r.EVE...)
	case CEF:
		b = s.appendBSDHeader(b, r)
		return s.appendCEF(b, r)
	}
	// RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
	b = s.appendPRI(b, r)
	b = append(b, '1', ' ')
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, s.host...)
	b = append(b, ' ')
	b = append(b, s.app...)
	b = append(b, ' ')
	b = append(b, s.procID...)
	b = append(b, ' ')
	a := r.Alert()
	if a == nil {
		b = append(b, headerField(r.Type, 32)...)
		b = append(b, " - "...)
		return append(b, r.EVE...)
	}
	b = append(b, headerField(a.KindName(), 32)...)
	b = append(b, " [echowatch@32473 kind=\""...)
	b = appendSDValue(b, a.KindName())
	b = append(b, "\" phase=\""...)
	b = appendSDValue(b, a.Phase().String())
	b = append(b, "\" id=\""...)
	b = appendSDValue(b, a.ID())
	b = append(b, "\" sid=\""...)
	b = strconv.AppendUint(b, uint64(a.SignatureID()), 10)
	if a.Tenant != 0 {
		b = append(b, "\" tenant=\""...)
		b = strconv.AppendUint(b, uint64(a.Tenant), 10)
	}
	if a.Tunnel.Depth > 0 {
		b = append(b, "\" tunnel=\""...)
		b = appendSDValue(b, string(a.AppendTunnel(nil)))
	}
	if a.Incident.Sampling.Rate != 0 {
		b = append(b, "\" telemetry=\""...)
		b = appendSDValue(b, string(a.AppendTelemetry(nil)))
	}
	b = append(b, "\"] "...)
	return append(b, r.EVE...)
}

// appendBSDHeader appends RFC 3164's <PRI>Mmm dd hh:mm:ss HOSTNAME, in
// local time as that format has no zone.
func (s *Syslog) appendBSDHeader(b []byte, r *Record) []byte {
	b = s.appendPRI(b, r)
	b = r.Time.Local().AppendFormat(b, time.Stamp)
	b = append(b, ' ')
	b = append(b, s.host...)
	return append(b, ' ')
}

func (s *Syslog) appendPRI(b []byte, r *Record) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.cfg.Facility*8+syslogSeverity(r)), 10)
	return append(b, '>')
}

// syslogSeverity maps an alert's severity (1 high to 3 low) to syslog's:
// 1 critical, 2 error, 3 warning; other events are informational.
func syslogSeverity(r *Record) int {
	a := r.Alert()
	if a == nil {
		return 6
	}
	switch a.Severity {
	case 1:
		return 2
	case 2:
		return 3
	case 3:
		return 4
	}
	return 5
}

// appendSDValue appends s as an RFC 5424 PARAM-VALUE: '"', '\' and ']'
// are escaped with a backslash (section 6.3.3).
func appendSDValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// headerField makes s a valid header field: printable US-ASCII without
// spaces, at most n bytes, "-" when empty (RFC 5424 section 6.2).
func headerField(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
