package sinks

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// SyslogOptions are the syslog outputs' settings; the query keys are the
// YAML keys.
type SyslogOptions struct {
	Format   string           `yaml:"format"`   // 5424 (default), 3164 or cef
	Facility string           `yaml:"facility"` // local0 (default) to local7, user, daemon...
	TLSFiles `yaml:",inline"` // syslog+tls only
}

// parseSyslogURL makes the destination of syslog+udp|tcp|tls://host[:port]
// or syslog+unix:///path, with o.Syslog's options, which the query's
// override.
func parseSyslogURL(u *url.URL, q queryValues, o Options) (*Syslog, error) {
	so := o.Syslog
	q.override("format", &so.Format)
	q.override("facility", &so.Facility)
	so.TLSFiles.fromQuery(q)
	if err := q.done(); err != nil {
		return nil, err
	}
	cfg := SyslogConfig{
		Network:  strings.TrimPrefix(u.Scheme, "syslog+"),
		Addr:     u.Host,
		Hostname: o.SensorName,
		Version:  o.Version,
	}
	if cfg.Network == "unix" {
		if u.Host != "" || u.Path == "" {
			return nil, errors.New("want syslog+unix:///path/to/socket")
		}
		cfg.Addr = u.Path
	} else if err := checkPort(u.Port()); err != nil {
		return nil, err
	} else if u.Port() == "" {
		// The IANA ports: 514 for syslog over UDP and TCP, 6514 over TLS.
		port := "514"
		if cfg.Network == "tls" {
			port = "6514"
		}
		cfg.Addr = net.JoinHostPort(u.Hostname(), port)
	}
	var err error
	if cfg.Format, err = ParseSyslogFormat(so.Format); err != nil {
		return nil, err
	}
	if so.Facility != "" {
		if cfg.Facility, err = ParseFacility(so.Facility); err != nil {
			return nil, err
		}
	}
	if cfg.Network == "tls" {
		if cfg.TLS, err = so.TLSFiles.Config(); err != nil {
			return nil, err
		}
	} else if so.TLSFiles != (TLSFiles{}) {
		return nil, errors.New("ca, cert, key and server_name need syslog+tls")
	}
	return NewSyslog(cfg)
}
