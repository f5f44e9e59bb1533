package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/report"
	"github.com/echowatch/echowatch/sinks"
)

// usageError is a mistake on the command line or in the configuration: exit
// status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// config is everything a run needs. Its YAML form is the --config file;
// flags given on the command line win over it.
type config struct {
	Read          []string         `yaml:"read"`
	Interface     string           `yaml:"interface"`
	Capture       string           `yaml:"capture"`
	BPF           string           `yaml:"bpf"`
	Snaplen       int              `yaml:"snaplen"`
	Promiscuous   bool             `yaml:"promiscuous"`
	Outputs       []string         `yaml:"outputs"`
	Format        string           `yaml:"format"`
	MaxMemory     byteSize         `yaml:"max_memory"`
	MaxFlows      int              `yaml:"max_flows"` // 0: sized from max_memory
	Workers       int              `yaml:"workers"`
	VXLANPorts    []int            `yaml:"vxlan_ports"`
	Tenant        string           `yaml:"tenant"`
	Dedup         time.Duration    `yaml:"dedup"`
	Stats         bool             `yaml:"stats"`
	StatsInterval time.Duration    `yaml:"stats_interval"`
	User          string           `yaml:"user"`
	Summary       string           `yaml:"summary"`
	Report        string           `yaml:"report"`
	MetricsListen string           `yaml:"metrics_listen"`
	Evidence      evidenceOptions  `yaml:"evidence"`
	Telemetry     telemetryOptions `yaml:"telemetry"`

	// logIncidents is how many incidents the end-of-run summary keeps: its
	// share of max_memory.
	logIncidents int
	// given is the table sizes as the settings gave them, before
	// fitMemory sized those left at 0: what a reload compares.
	given tableSizes

	// metricsRan, for tests, is called with the metrics server's address
	// after the run, while the server still serves the final counters.
	metricsRan func(addr string)
	// reread, with --config, reads the file again and applies the
	// command line's flags over it, as at the start: for reloads.
	reread        func() (config, error)
	OutputOptions sinks.Options `yaml:"output_options"`

	detect.Config `yaml:",inline"`
}

func defaultConfig() config {
	return config{
		Capture:       "pcap",
		Snaplen:       capture.MaxSnaplen,
		Promiscuous:   true,
		Outputs:       []string{"stdout"},
		MaxMemory:     byteSize(detect.DefaultMaxMemory),
		Workers:       1,
		Tenant:        "none",
		StatsInterval: 60 * time.Second,
		OutputOptions: sinks.DefaultOptions(),
		Evidence:      defaultEvidenceOptions(),
		Config:        detect.DefaultConfig(),
	}
}

// evidenceOptions are the evidence files' settings (--evidence-dir).
type evidenceOptions struct {
	Dir      string   `yaml:"dir"`
	Packets  int      `yaml:"packets"`   // first packets kept per incident
	Snaplen  int      `yaml:"snaplen"`   // bytes kept of each frame
	MaxOpen  int      `yaml:"max_open"`  // incidents whose files are written at once
	MaxFiles int      `yaml:"max_files"` // files kept; the oldest go first
	MaxBytes byteSize `yaml:"max_bytes"` // bytes kept; likewise
}

func defaultEvidenceOptions() evidenceOptions {
	return evidenceOptions{Packets: 100, Snaplen: 65535, MaxOpen: 256, MaxFiles: 1000, MaxBytes: 1 << 30}
}

// byteSize is a size in bytes that YAML may give with a unit: 1048576,
// 512KiB, 100MiB, 1GiB (or kB, MB, GB in powers of ten).
type byteSize int64

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	n64, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = byteSize(n64)
	return nil
}

// Set and String make a byteSize a flag.Value.
func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string { return detect.FormatBytes(int64(*b)) }

func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with KiB, MiB, GiB, ...)", s)
	}
	return n * mult, nil
}

// listFlag is a repeatable flag. The first value given replaces the list
// (from the defaults or the file); each further one adds to it.
type listFlag struct {
	vals *[]string
	set  bool
}

func (l *listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l *listFlag) Set(s string) error {
	l.reset()
	*l.vals = append(*l.vals, s)
	return nil
}

// reset empties the list at the first value the command line gives.
func (l *listFlag) reset() {
	if !l.set {
		*l.vals, l.set = nil, true
	}
}

// cidrFlag is a listFlag whose values are comma-separated lists of CIDRs.
type cidrFlag struct{ listFlag }

func (c *cidrFlag) Set(s string) error {
	c.reset()
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*c.vals = append(*c.vals, part)
		}
	}
	return nil
}

// portsFlag is a listFlag of UDP ports, comma-separated or repeated.
type portsFlag struct {
	vals *[]int
	set  bool
}

func (p *portsFlag) String() string {
	if p.vals == nil {
		return ""
	}
	s := make([]string, len(*p.vals))
	for i, v := range *p.vals {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *portsFlag) Set(s string) error {
	if !p.set {
		*p.vals, p.set = nil, true
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, ok := portNumber(part)
		if !ok || n == 0 {
			return fmt.Errorf("%q is not a port (want a number from 1 to 65535)", part)
		}
		*p.vals = append(*p.vals, int(n))
	}
	return nil
}

const usageText = `Usage: echowatch -r FILE... [options]
       echowatch -i IFACE [options]
       echowatch --sflow ADDR | --netflow ADDR --exporter ROUTER... [options]

Watch traffic for abuse of the echo protocol and its siblings (chargen,
daytime, qotd, time, discard): UDP reflection, service loops, spoofed
floods, scans for these services, and hosts that still run them.
Alerts are Suricata-compatible EVE JSON, one per line.

Input:
  -r FILE                  read a pcap or pcapng capture (gzip-compressed is
                           fine); repeat for several files merged into one
                           timeline by time; - reads standard input
  -i IFACE                 capture live on IFACE
      --capture MODE       live capture method: pcap (libpcap, default) or
                           afpacket (Linux TPACKET_V3 ring with fanout)
      --bpf EXPR           only look at packets matching the tcpdump-style
                           filter EXPR (in the kernel when live)
      --snaplen N          bytes captured per packet (default 262144)
      --no-promisc         do not put the interface in promiscuous mode
      --user NAME          after opening the capture, run as user NAME
                           (when started as root)
      --workers N          goroutines that read and decode in parallel
                           (default 1): a capture file is cut in regions
                           each reads itself; afpacket gives each a socket
                           of a fanout group; otherwise one reader deals
                           them the frames. A file's alerts are the same
                           for any number
      --vxlan-port PORT    UDP port that carries VXLAN besides 4789, e.g.
                           8472 (Linux, flannel); repeatable or a comma list
      --dedup WINDOW       drop a packet seen again within WINDOW (e.g. 1ms;
                           at most 1s; default 0: off): the second copy that a
                           span of both directions or of two VLANs delivers

Router telemetry (one collector for a whole network):
      --sflow ADDR         collect sFlow v5 on UDP ADDR (HOST:PORT, :PORT or
                           PORT; the usual port is 6343)
      --netflow ADDR       collect NetFlow v5, v9 and IPFIX on UDP ADDR (the
                           usual ports are 2055 and 4739)
      --telemetry          the -r files hold exported datagrams (a capture of
                           what routers sent): replay them
      --exporter ADDR[=IF,...]
                           a router whose telemetry counts, and the ifIndexes
                           whose ingress counts (default: all); repeatable.
                           Others are ignored; --exporter any takes every one

Detection:
      --home-net CIDRS     the networks you protect, comma-separated; decides
                           whether an incident is inbound or outbound
      --max-memory SIZE    memory the sensor may use, which sizes every table
                           keyed on packet data: flows, victims, scanners...
                           (default 256MiB; 512MiB, 2GiB, ...)
      --max-flows N        flows tracked at most (default: their share of
                           --max-memory)
      --update-interval D  how often an open incident is re-reported
                           (packet time, default 60s)
      --end-after D        quiet time after which an incident ends (default 60s)
      --max-alerts-per-second N
                           cap on incidents announced per second of packet
                           time (default 100), shared fairly by kind; updates
                           and ends of announced incidents always go out
      --sensor-name NAME   name put in every alert's host field (default:
                           the host name)
      --tenant KEY         keep the detection state of each tunnel apart, by
                           KEY: none (default), vni, gre-key, erspan-session,
                           vlan, mpls-label or teid: tenants that reuse
                           addresses are never one victim

Output:
      --output URL         where alerts go; repeatable (default stdout):
                           stdout, file:///path, syslog+udp://host:port,
                           syslog+tcp://host:port, syslog+tls://host:port,
                           syslog+unix:///dev/log, kafka://broker:9092/topic
                           (options in the URL's query; see the README)
      --queue-size N       events each output holds while its destination
                           is slow or down; more are dropped and counted
                           (default 10000, at most 1000000; reading files,
                           a slow output that is up is waited for instead)
      --flush-timeout D    how long outputs may take to deliver what they
                           hold at exit (default 5s)
      --format FMT         eve (JSON lines) or text (readable lines; the
                           default when standard output is a terminal)
      --stats              emit capture, decode and flow counters as an EVE
                           stats event at the end (and every
                           --stats-interval while live)
      --stats-interval D   stats period when live (default 60s)
      --metrics-listen ADDR
                           serve Prometheus metrics on http://ADDR/metrics
                           (e.g. 127.0.0.1:9750) while the sensor runs
      --summary FILE       at the end, write the incidents as one JSON
                           document to FILE (a table of them goes to
                           standard error when it is a terminal)
      --report FILE.html   at the end, write a self-contained HTML page with
                           the incidents and a plot of their packet rates
      --evidence-dir DIR   keep the first packets of each incident in
                           DIR/<incident id>.pcap, named in its alerts
                           (bounded: see evidence in the configuration)
      --evidence-packets N packets kept per incident (default 100)

General:
      --config FILE        read settings from a YAML file; flags win
      --version            print the version and exit
  -h, --help               print this help and exit

Exit status: 0 on success, 1 on a runtime failure, 2 on a usage error.
`

// commandLine is what the command line says besides settings: where the
// settings file is, and whether to print help or the version.
type commandLine struct {
	config        string
	version, help bool
}

// newFlagSet defines the flags over cfg: parsing the command line puts
// each flag given into its setting, over the defaults and the file's, and
// leaves the others as they are.
func newFlagSet(cfg *config, cl *commandLine) *flag.FlagSet {
	fs := flag.NewFlagSet("echowatch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&listFlag{vals: &cfg.Read}, "r", "")
	fs.StringVar(&cfg.Interface, "i", cfg.Interface, "")
	fs.StringVar(&cfg.Capture, "capture", cfg.Capture, "")
	fs.StringVar(&cfg.BPF, "bpf", cfg.BPF, "")
	fs.IntVar(&cfg.Snaplen, "snaplen", cfg.Snaplen, "")
	fs.BoolFunc("no-promisc", "", func(v string) error {
		off, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("parse error") // as the flag package says of a bool
		}
		cfg.Promiscuous = !off
		return nil
	})
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "")
	fs.Var(&portsFlag{vals: &cfg.VXLANPorts}, "vxlan-port", "")
	fs.DurationVar(&cfg.Dedup, "dedup", cfg.Dedup, "")
	fs.StringVar(&cfg.Tenant, "tenant", cfg.Tenant, "")
	fs.Var(&cidrFlag{listFlag{vals: &cfg.HomeNet}}, "home-net", "")
	fs.Var(&cfg.MaxMemory, "max-memory", "")
	fs.IntVar(&cfg.MaxFlows, "max-flows", cfg.MaxFlows, "")
	fs.DurationVar(&cfg.UpdateInterval, "update-interval", cfg.UpdateInterval, "")
	fs.DurationVar(&cfg.EndAfter, "end-after", cfg.EndAfter, "")
	fs.IntVar(&cfg.MaxAlertsPerSecond, "max-alerts-per-second", cfg.MaxAlertsPerSecond, "")
	fs.StringVar(&cfg.SensorName, "sensor-name", cfg.SensorName, "")
	fs.Var(&listFlag{vals: &cfg.Outputs}, "output", "")
	fs.IntVar(&cfg.OutputOptions.QueueSize, "queue-size", cfg.OutputOptions.QueueSize, "")
	fs.DurationVar(&cfg.OutputOptions.FlushTimeout, "flush-timeout", cfg.OutputOptions.FlushTimeout, "")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "")
	fs.BoolVar(&cfg.Stats, "stats", cfg.Stats, "")
	fs.DurationVar(&cfg.StatsInterval, "stats-interval", cfg.StatsInterval, "")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, "")
	fs.StringVar(&cfg.User, "user", cfg.User, "")
	fs.StringVar(&cfg.Summary, "summary", cfg.Summary, "")
	fs.StringVar(&cfg.Report, "report", cfg.Report, "")
	fs.StringVar(&cfg.Evidence.Dir, "evidence-dir", cfg.Evidence.Dir, "")
	fs.IntVar(&cfg.Evidence.Packets, "evidence-packets", cfg.Evidence.Packets, "")
	fs.StringVar(&cfg.Telemetry.SFlow, "sflow", cfg.Telemetry.SFlow, "")
	fs.StringVar(&cfg.Telemetry.NetFlow, "netflow", cfg.Telemetry.NetFlow, "")
	fs.BoolVar(&cfg.Telemetry.Files, "telemetry", cfg.Telemetry.Files, "")
	fs.Var(&exporterFlag{t: &cfg.Telemetry}, "exporter", "")
	fs.StringVar(&cl.config, "config", cl.config, "")
	fs.BoolVar(&cl.version, "version", false, "")
	fs.BoolVar(&cl.help, "h", false, "")
	fs.BoolVar(&cl.help, "help", false, "")
	return fs
}

// parseArgs turns the command line, and the configuration file it names,
// into a config. done is true when the run is over (--help, --version).
func parseArgs(args []string, stdout io.Writer, stdoutIsTerminal bool) (cfg config, done bool, err error) {
	// A first pass finds the file and the mistakes; the settings are
	// taken in load, with the flags over the file.
	var cl commandLine
	cfg = defaultConfig()
	fs := newFlagSet(&cfg, &cl)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return cfg, true, nil
		}
		return cfg, false, usagef("%s", asTyped(err, args))
	}
	if cl.help {
		fmt.Fprint(stdout, usageText)
		return cfg, true, nil
	}
	if cl.version {
		fmt.Fprintf(stdout, "echowatch %s\n", version)
		return cfg, true, nil
	}
	if fs.NArg() > 0 {
		return cfg, false, usagef("unexpected argument %q (files are read with -r FILE)", fs.Arg(0))
	}
	// Flags given on the command line win over the file, at the start and
	// at every reload: they are parsed again over what the file says.
	load := func() (config, error) {
		cfg := defaultConfig()
		if cl.config != "" {
			if err := loadConfigFile(cl.config, &cfg); err != nil {
				return cfg, err
			}
		}
		if err := newFlagSet(&cfg, &commandLine{}).Parse(args); err != nil {
			return cfg, usagef("%v", err) // it parsed once: cannot happen
		}
		if cfg.Format == "" {
			cfg.Format = "eve"
			if stdoutIsTerminal {
				cfg.Format = "text"
			}
		}
		if len(cfg.Outputs) == 0 {
			return cfg, usagef("outputs: at least one output is needed (stdout is the default)")
		}
		if cfg.SensorName == "" {
			cfg.SensorName, _ = os.Hostname()
		}
		if err := cfg.validate(); err != nil {
			return cfg, err
		}
		return cfg, cfg.fitMemory()
	}
	cfg, err = load()
	if cl.config != "" {
		cfg.reread = load
	}
	return cfg, false, err
}

// asTyped rewrites an error of package flag, which names every flag with
// one dash ("-workers"), to say what the user typed ("--workers"), as GNU
// tools do: "unrecognized option '--bogus'", "option '--workers' requires
// an argument", "invalid value "x" for option --workers: ...".
func asTyped(err error, args []string) string {
	msg := err.Error()
	typed := func(name string) string {
		for _, a := range args {
			if a == "--" {
				break
			}
			dashes := len(a) - len(strings.TrimLeft(a, "-"))
			if dashes == 0 || dashes > 2 {
				continue
			}
			if n, _, _ := strings.Cut(a[dashes:], "="); n == name {
				return a[:dashes] + name
			}
		}
		return "--" + name
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unrecognized option '%s'", typed(name))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("option '%s' requires an argument", typed(name))
	}
	// invalid value "x" for flag -name: why; invalid boolean value "x" for -name: why
	for _, sep := range []string{" for flag -", " for -"} {
		before, after, ok := strings.Cut(msg, sep)
		if !ok || !strings.HasPrefix(before, "invalid ") {
			continue
		}
		name, why, _ := strings.Cut(after, ": ")
		return fmt.Sprintf("%s for option %s: %s", before, typed(name), why)
	}
	return msg
}

// maxConfigSize bounds the configuration file.
const maxConfigSize = 16 << 20

// loadConfigFile decodes the YAML file at path over cfg. Unknown keys are
// an error, so a misspelt setting is not silently ignored.
func loadConfigFile(path string, cfg *config) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("config %s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	// Read whole, up to a bound far above any real file (long allow
	// lists included): a file past it is refused, never cut short.
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return usagef("config %s: %v", path, errors.Unwrap(err))
	}
	if len(b) > maxConfigSize {
		return usagef("config %s: larger than %d MiB: refused", path, maxConfigSize>>20)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return usagef("config %s: %s", path, yamlError(err))
	}
	return nil
}

// Upper bounds of numeric settings: past them a value is a mistake (a
// digit too many), and would exhaust memory at start rather than do what
// was meant.
const (
	maxFlowsBound = 100_000_000
	// maxMemoryBound bounds --max-memory far above any sensor's memory,
	// and below where its arithmetic could overflow.
	maxMemoryBound = 16 << 40
	// maxQueueSize bounds --queue-size: each output makes room for that
	// many events at start.
	maxQueueSize = 1_000_000
)

// validate checks the settings that are not detection's.
func (c *config) validate() error {
	switch {
	case len(c.Read) == 0 && c.Interface == "" && !c.Telemetry.on():
		return usagef("nothing to read: give -r FILE, -i IFACE, --sflow ADDR or --netflow ADDR")
	case len(c.Read) > 0 && c.Interface != "":
		return usagef("-r and -i cannot be used together")
	case c.Capture != "pcap" && c.Capture != "afpacket":
		return usagef("--capture: unknown method %q (want pcap or afpacket)", c.Capture)
	case c.Snaplen < 64 || c.Snaplen > capture.MaxSnaplen:
		return usagef("--snaplen: %d is out of range (64 to %d)", c.Snaplen, capture.MaxSnaplen)
	case c.Workers < 1 || c.Workers > 64:
		return usagef("--workers: %d is out of range (1 to 64)", c.Workers)
	case c.MaxFlows < 0 || c.MaxFlows > maxFlowsBound:
		return usagef("--max-flows: %d is out of range (1 to %d, or 0: sized from --max-memory)", c.MaxFlows, maxFlowsBound)
	case c.StatsInterval < 100*time.Millisecond || c.StatsInterval > 24*time.Hour:
		return usagef("--stats-interval: %v is out of range (100ms to 24h)", c.StatsInterval)
	case c.MetricsListen != "" && !validListenAddr(c.MetricsListen):
		return usagef("--metrics-listen: %q is not an address to listen on (want HOST:PORT or :PORT)", c.MetricsListen)
	case c.Format != "eve" && c.Format != "text":
		return usagef("--format: unknown format %q (want eve or text)", c.Format)
	}
	if err := c.Telemetry.validate(c); err != nil {
		return err
	}
	if q := c.OutputOptions.QueueSize; q < 1 || q > maxQueueSize {
		return usagef("--queue-size: %d is out of range (1 to %d)", q, maxQueueSize)
	}
	if d := c.OutputOptions.FlushTimeout; d <= 0 || d > time.Hour {
		return usagef("--flush-timeout: %v is out of range (above 0, at most 1h)", d)
	}
	dc, err := c.decoderConfig()
	if err != nil {
		return err
	}
	// The decoder knows which ports are another encapsulation's, and how
	// many it keeps.
	if _, err := capture.NewDecoderWith(dc); err != nil {
		return usagef("--vxlan-port: %s", strings.TrimPrefix(err.Error(), "capture: "))
	}
	if c.Dedup < 0 || c.Dedup > capture.MaxDedupWindow {
		return usagef("--dedup: %v is out of range (0: off, or above 0 and at most %v)", c.Dedup, capture.MaxDedupWindow)
	}
	if err := validateOutputs(c.Outputs, c.OutputOptions); err != nil {
		return err
	}
	if err := c.Evidence.validate(); err != nil {
		return err
	}
	if err := c.Config.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// decoderConfig is what the settings ask of the decoders: the VXLAN ports
// and the tenant key. A usage error names the setting at fault; validate
// checks the rest with the decoder.
func (c *config) decoderConfig() (capture.DecoderConfig, error) {
	var dc capture.DecoderConfig
	for _, p := range c.VXLANPorts {
		if p < 1 || p > 65535 {
			return dc, usagef("--vxlan-port: %d is not a port (want a number from 1 to 65535)", p)
		}
		dc.VXLANPorts = append(dc.VXLANPorts, uint16(p))
	}
	var err error
	if dc.Tenant, err = capture.ParseTenantKey(c.Tenant); err != nil {
		return dc, usagef("--tenant: %s", strings.TrimPrefix(err.Error(), "capture: tenant key "))
	}
	return dc, nil
}

func (e *evidenceOptions) validate() error {
	switch {
	case e.Packets < 1 || e.Packets > 1_000_000:
		return usagef("--evidence-packets: %d is out of range (1 to 1000000)", e.Packets)
	case e.Snaplen < 64 || e.Snaplen > capture.MaxSnaplen:
		return usagef("evidence.snaplen: %d is out of range (64 to %d)", e.Snaplen, capture.MaxSnaplen)
	case e.MaxOpen < 1 || e.MaxOpen > 4096:
		return usagef("evidence.max_open: %d is out of range (1 to 4096)", e.MaxOpen)
	case e.MaxFiles < 1:
		return usagef("evidence.max_files: must be positive, not %d", e.MaxFiles)
	case e.MaxBytes < 1<<20:
		return usagef("evidence.max_bytes: %d is too small (at least 1MiB)", e.MaxBytes)
	}
	return nil
}

// tableSizes are the size settings of the tables max_memory shares.
type tableSizes struct {
	flows, victims, pairs, targets, scanners, findings int
}

func (c *config) tableSizes() tableSizes {
	return tableSizes{c.MaxFlows, c.Reflection.MaxVictims, c.Loop.MaxPairs,
		c.SpoofedFlood.MaxTargets, c.Scan.MaxScanners, c.Exposed.MaxFindings}
}

// fitMemory sizes, from max_memory, the tables whose size the settings do
// not give: the flow table, detection's, and the incident log that the
// summary and the report are made from.
func (c *config) fitMemory() error {
	c.given = c.tableSizes()
	b := c.budget()
	if int64(c.MaxMemory) < b.Min() {
		workers := ""
		if c.Workers > 1 {
			workers = fmt.Sprintf(" for %d workers", c.Workers)
		}
		return usagef("--max-memory: %s is too small%s (at least %s)", detect.FormatBytes(int64(c.MaxMemory)), workers, detect.FormatBytes(b.Min()))
	}
	if c.MaxMemory > maxMemoryBound {
		return usagef("--max-memory: %s is too large (at most %s)", detect.FormatBytes(int64(c.MaxMemory)), detect.FormatBytes(maxMemoryBound))
	}
	tables := append(c.Config.Tables(&c.MaxFlows), report.LogTable(&c.logIncidents))
	if err := detect.FitMemory(b, tables); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "detect: "))
	}
	return nil
}

func (c *config) budget() detect.Budget {
	return detect.Budget{Bytes: int64(c.MaxMemory), Workers: c.Workers}
}

// limitMemory sets the Go runtime's soft memory limit from max_memory
// (what the runtime manages of it), unless GOMEMLIMIT sets one: the
// collector then works harder as the process nears the budget, instead
// of letting garbage double the heap. It returns what puts the previous
// limit back.
func limitMemory(b detect.Budget) (restore func()) {
	if b.GoLimit() <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prev := debug.SetMemoryLimit(b.GoLimit())
	return func() { debug.SetMemoryLimit(prev) }
}

// goTypeName is how the YAML decoder names the Go type it filled.
var goTypeName = regexp.MustCompile(` in type [\w.\[\]*]+`)

// yamlError puts a YAML error on one line, in the user's terms.
func yamlError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	// "field x not found in type sinks.SyslogOptions": the line says where.
	msg = goTypeName.ReplaceAllString(msg, "")
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// validListenAddr reports whether addr is HOST:PORT or :PORT, with a port
// number that exists (0 asks the kernel for one).
func validListenAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	_, ok := portNumber(port)
	return err == nil && ok
}

// portNumber parses a TCP or UDP port number, 0 included.
func portNumber(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}
