package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// telemetryOptions are the settings of router telemetry as an input
// (--sflow, --netflow, --telemetry, --exporter; "telemetry" in YAML).
type telemetryOptions struct {
	SFlow   string `yaml:"sflow"`   // UDP address to collect sFlow on
	NetFlow string `yaml:"netflow"` // UDP address to collect NetFlow v5/v9 and IPFIX on
	// Files says the -r files hold exported datagrams to replay.
	Files        bool              `yaml:"files"`
	AllowUnknown bool              `yaml:"allow_unknown"`
	Exporters    []exporterOptions `yaml:"exporters"`
	// HoldBack is how long a live collector holds frames to put them in
	// time order; a replay holds them to the end (see capture.Telemetry).
	HoldBack     time.Duration `yaml:"hold_back"`
	MaxExporters int           `yaml:"max_exporters"`
	MaxTemplates int           `yaml:"max_templates"`
}

// exporterOptions is one router whose telemetry counts.
type exporterOptions struct {
	Address    string   `yaml:"address"`
	Interfaces []uint32 `yaml:"interfaces"`
	Sampling   uint32   `yaml:"sampling"`
}

// listed reports whether a is one of the exporters the configuration
// names.
func (t *telemetryOptions) listed(a netip.Addr) bool {
	for _, x := range t.Exporters {
		if p, err := netip.ParseAddr(x.Address); err == nil && p.Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

// on reports whether telemetry is the input.
func (t *telemetryOptions) on() bool { return t.SFlow != "" || t.NetFlow != "" || t.Files }

// exporterFlag is --exporter ADDR[=IFINDEX,...], repeatable; "any" allows
// every exporter.
type exporterFlag struct {
	t   *telemetryOptions
	set bool
}

func (e *exporterFlag) String() string { return "" }

func (e *exporterFlag) Set(s string) error {
	if !e.set {
		e.t.Exporters, e.set = nil, true
	}
	if s == "any" {
		e.t.AllowUnknown = true
		return nil
	}
	addr, ifs, _ := strings.Cut(s, "=")
	x := exporterOptions{Address: addr}
	if ifs != "" {
		for _, f := range strings.Split(ifs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not an interface index", f)
			}
			x.Interfaces = append(x.Interfaces, uint32(n))
		}
	}
	e.t.Exporters = append(e.t.Exporters, x)
	return nil
}

// validate checks the telemetry settings against the rest of c.
func (t *telemetryOptions) validate(c *config) error {
	switch {
	case t.Files && len(c.Read) == 0:
		return usagef("--telemetry: give the files of exported datagrams with -r FILE")
	case (t.SFlow != "" || t.NetFlow != "") && len(c.Read) > 0:
		return usagef("--sflow and --netflow collect live: they cannot be used with -r (replay a capture of exports with -r FILE --telemetry)")
	case t.on() && len(t.Exporters) == 0 && !t.AllowUnknown:
		return usagef("telemetry: no exporter is allowed: name the routers with --exporter ADDR (or --exporter any; sFlow and NetFlow have no authentication)")
	case t.MaxExporters < 0 || t.MaxExporters > 1_000_000:
		return usagef("telemetry.max_exporters: %d is out of range (1 to 1000000, or 0: %d)", t.MaxExporters, capture.DefaultMaxExporters)
	case t.MaxTemplates < 0 || t.MaxTemplates > 65536:
		return usagef("telemetry.max_templates: %d is out of range (1 to 65536, or 0: %d)", t.MaxTemplates, capture.DefaultMaxTemplates)
	case t.HoldBack < 0 || t.HoldBack > 10*time.Minute:
		return usagef("telemetry.hold_back: %v is out of range (0 to 10m)", t.HoldBack)
	}
	_, err := t.config()
	return err
}

// config is the capture package's form of the settings.
func (t *telemetryOptions) config() (capture.TelemetryConfig, error) {
	tc := capture.TelemetryConfig{AllowUnknown: t.AllowUnknown, MaxExporters: t.MaxExporters,
		MaxTemplates: t.MaxTemplates, HoldBack: t.HoldBack}
	if t.Files {
		tc.HoldBack = -1 // a replay: every record at its own time
	}
	for _, x := range t.Exporters {
		a, err := netip.ParseAddr(x.Address)
		if err != nil {
			return tc, usagef("--exporter: %q is not an IP address", x.Address)
		}
		if x.Sampling > 1<<24 {
			return tc, usagef("telemetry.exporters: %s: sampling %d is out of range (1 to 16777216, or 0: as exported)", a, x.Sampling)
		}
		tc.Exporters = append(tc.Exporters, capture.ExporterConfig{Addr: a, Interfaces: x.Interfaces, Sampling: x.Sampling})
	}
	return tc, nil
}

// openTelemetry opens the telemetry input: the collector's sockets, or the
// capture files of exports to replay.
func openTelemetry(cfg config, stdin io.Reader) (*capture.Telemetry, error) {
	tc, err := cfg.Telemetry.config()
	if err != nil {
		return nil, err
	}
	var in capture.DatagramSource
	if cfg.Telemetry.Files {
		src, err := openFiles(cfg.Read, stdin)
		if err != nil {
			return nil, err
		}
		in = capture.NewCapturedDatagrams(src)
	} else {
		c, err := capture.ListenTelemetry(capture.CollectorConfig{SFlow: cfg.Telemetry.SFlow, NetFlow: cfg.Telemetry.NetFlow})
		if err != nil {
			return nil, err
		}
		in = c
	}
	t, err := capture.NewTelemetry(tc, in)
	if err != nil {
		in.Close()
		return nil, usagef("%v", err)
	}
	return t, nil
}
