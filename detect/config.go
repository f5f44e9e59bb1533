package detect

import (
	"net/netip"
	"strings"
	"time"
)

// Config is the detection settings. Its keys are top-level keys of the
// sensor's YAML config file (the cmd embeds it inline); durations are Go
// duration strings ("5s"), networks are CIDRs or single addresses.
type Config struct {
	// HomeNet lists the networks we protect, like Suricata's HOME_NET. It
	// decides an incident's direction; empty makes every direction
	// "unknown".
	HomeNet []string `yaml:"home_net"`
	// SensorName is the alert's "host" field; empty leaves it out.
	SensorName string `yaml:"sensor_name"`
	// UpdateInterval is how often, in packet time, an open incident reports
	// its current and peak rates.
	UpdateInterval time.Duration `yaml:"update_interval"`
	// EndAfter is how long an incident must stay below its threshold to end.
	EndAfter time.Duration `yaml:"end_after"`
	// MaxAlertsPerSecond bounds the alerts of one second of packet time,
	// whatever the traffic; 0 means no bound.
	MaxAlertsPerSecond int `yaml:"max_alerts_per_second"`

	Reflection   ReflectionConfig   `yaml:"reflection"`
	Loop         LoopConfig         `yaml:"loop"`
	SpoofedFlood SpoofedFloodConfig `yaml:"spoofed_flood"`
	Scan         ScanConfig         `yaml:"scan"`
	Exposed      ExposedConfig      `yaml:"exposed"`
}

// ReflectionConfig configures the reflection detector: UDP from a service
// port toward a victim, or forged requests (source = victim) into service
// ports we can see.
type ReflectionConfig struct {
	Ports []uint16 `yaml:"ports"` // the reflecting services
	// PPS and BPS (bits/s) are the start thresholds toward one victim,
	// averaged over Window; either one starts an incident.
	PPS    float64       `yaml:"pps"`
	BPS    float64       `yaml:"bps"`
	Window time.Duration `yaml:"window"`
	// PrefixV4 and PrefixV6 are the prefix lengths over which the same
	// measure is summed against carpet bombing; 0 turns that off.
	PrefixV4 int `yaml:"prefix_v4"`
	PrefixV6 int `yaml:"prefix_v6"`
	// MaxVictims bounds the victims and prefixes tracked, each; 0 sizes
	// the tables from max_memory, as every table's size setting does.
	MaxVictims int      `yaml:"max_victims"`
	Allow      []string `yaml:"allow"`
}

// LoopConfig configures the loop detector: UDP both ways between two
// service ports of Ports.
type LoopConfig struct {
	Ports []uint16 `yaml:"ports"`
	// Packets each way within Window start an incident.
	Packets  int           `yaml:"packets"`
	Window   time.Duration `yaml:"window"`
	MaxPairs int           `yaml:"max_pairs"`
	Allow    []string      `yaml:"allow"`
}

// SpoofedFloodConfig configures the spoofed-flood detector.
type SpoofedFloodConfig struct {
	// Ports selects the traffic examined: packets from or to one of them;
	// empty examines every TCP and UDP packet.
	Ports []uint16 `yaml:"ports"`
	// PPS is the start threshold in evidently forged (bogon, land) packets
	// per second toward one target, averaged over Window.
	PPS float64 `yaml:"pps"`
	// DistinctSources within one Window, of which at least RandomShare sent
	// at most two packets, make a random-source flood.
	DistinctSources int           `yaml:"distinct_sources"`
	RandomShare     float64       `yaml:"random_share"`
	Window          time.Duration `yaml:"window"`
	// SourceMemory is how long a target remembers a source at least: one
	// heard from within it is a returning client, never a random source.
	SourceMemory time.Duration `yaml:"source_memory"`
	MaxTargets   int           `yaml:"max_targets"`
	Allow        []string      `yaml:"allow"`
}

// ScanConfig configures the scan detector: one source probing Ports (UDP,
// or TCP SYN) on many hosts.
type ScanConfig struct {
	Ports  []uint16      `yaml:"ports"`
	Hosts  int           `yaml:"hosts"` // distinct hosts within Window
	Window time.Duration `yaml:"window"`
	// Rearm is how long a scan is open after its start: it ends then, and
	// the same scanner can raise another.
	Rearm       time.Duration `yaml:"rearm"`
	MaxScanners int           `yaml:"max_scanners"`
	Allow       []string      `yaml:"allow"`
}

// ExposedConfig configures the exposed-service finding: a host answering
// on one of Ports.
type ExposedConfig struct {
	Ports []uint16 `yaml:"ports"`
	// Rearm is how long an exposure is open after its start, as Scan's.
	Rearm       time.Duration `yaml:"rearm"`
	MaxFindings int           `yaml:"max_findings"`
	Allow       []string      `yaml:"allow"`
}

// Ports of the small services: echo, systat, daytime, qotd, chargen and
// time, the loop set; of them, those that answer any datagram from anyone
// with one of their own, the reflection set (systat, rarely run, is left
// to the loop set); and echo and chargen, which scans and exposed
// findings watch by default.
var (
	servicePorts     = []uint16{7, 11, 13, 17, 19, 37}
	reflectingPorts  = []uint16{7, 13, 17, 19, 37}
	echoChargenPorts = []uint16{7, 19}
)

// DefaultConfig returns the settings a sensor runs with where its
// configuration file sets none, with every table sized from max_memory
// (the size settings 0).
func DefaultConfig() Config {
	return Config{
		UpdateInterval:     60 * time.Second,
		EndAfter:           60 * time.Second,
		MaxAlertsPerSecond: 100,
		Reflection: ReflectionConfig{
			Ports: clone(reflectingPorts), PPS: 50, BPS: 1_000_000, Window: 5 * time.Second,
			PrefixV4: 24, PrefixV6: 64,
		},
		Loop: LoopConfig{
			Ports: clone(servicePorts), Packets: 10, Window: 5 * time.Second,
		},
		SpoofedFlood: SpoofedFloodConfig{
			Ports: clone(servicePorts), PPS: 100, DistinctSources: 1000, RandomShare: 0.9,
			Window: 5 * time.Second, SourceMemory: 5 * time.Minute,
		},
		Scan: ScanConfig{
			Ports: clone(echoChargenPorts), Hosts: 20, Window: 60 * time.Second,
			Rearm: time.Hour,
		},
		Exposed: ExposedConfig{
			Ports: clone(echoChargenPorts), Rearm: 24 * time.Hour,
		},
	}
}

func clone(p []uint16) []uint16 { return append([]uint16(nil), p...) }

// FlowPorts returns the ports whose flows the detectors need: the flow
// table should track every TCP and UDP packet from or to one of them.
func (c *Config) FlowPorts() *PortSet {
	s := &PortSet{}
	for _, ports := range [][]uint16{c.Reflection.Ports, c.Loop.Ports, c.Scan.Ports, c.Exposed.Ports} {
		for _, p := range ports {
			s.Add(p)
		}
	}
	return s
}

// Validate checks every setting and returns the first error, naming the
// setting as the YAML file spells it.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

// settings is a Config checked and turned into the forms the detectors use.
type settings struct {
	home         prefixSet
	allow        [NumKinds]prefixSet
	reflPorts    PortSet
	loopPorts    PortSet
	spoofPorts   *PortSet // nil: every port
	scanPorts    PortSet
	exposedPorts PortSet
}

func (c *Config) compile() (*settings, error) {
	s := &settings{}
	var err error
	if s.home, err = parsePrefixes("home_net", c.HomeNet); err != nil {
		return nil, err
	}
	checks := []error{
		positiveDur("update_interval", c.UpdateInterval),
		positiveDur("end_after", c.EndAfter),
		between("max_alerts_per_second", c.MaxAlertsPerSecond, 0, 1_000_000),

		ports("reflection.ports", c.Reflection.Ports, &s.reflPorts),
		positive("reflection.pps", c.Reflection.PPS),
		positive("reflection.bps", c.Reflection.BPS),
		window("reflection.window", c.Reflection.Window),
		prefixLen("reflection.prefix_v4", c.Reflection.PrefixV4, 32),
		prefixLen("reflection.prefix_v6", c.Reflection.PrefixV6, 128),
		atLeast("reflection.max_victims", c.Reflection.MaxVictims, 0),

		ports("loop.ports", c.Loop.Ports, &s.loopPorts),
		atLeast("loop.packets", c.Loop.Packets, 1),
		window("loop.window", c.Loop.Window),
		atLeast("loop.max_pairs", c.Loop.MaxPairs, 0),

		positive("spoofed_flood.pps", c.SpoofedFlood.PPS),
		between("spoofed_flood.distinct_sources", c.SpoofedFlood.DistinctSources, 2, 10_000_000),
		share("spoofed_flood.random_share", c.SpoofedFlood.RandomShare),
		window("spoofed_flood.window", c.SpoofedFlood.Window),
		window("spoofed_flood.source_memory", c.SpoofedFlood.SourceMemory),
		atLeast("spoofed_flood.max_targets", c.SpoofedFlood.MaxTargets, 0),

		ports("scan.ports", c.Scan.Ports, &s.scanPorts),
		between("scan.hosts", c.Scan.Hosts, 2, maxScanHosts),
		window("scan.window", c.Scan.Window),
		positiveDur("scan.rearm", c.Scan.Rearm),
		atLeast("scan.max_scanners", c.Scan.MaxScanners, 0),

		ports("exposed.ports", c.Exposed.Ports, &s.exposedPorts),
		positiveDur("exposed.rearm", c.Exposed.Rearm),
		atLeast("exposed.max_findings", c.Exposed.MaxFindings, 0),
	}
	if c.SpoofedFlood.SourceMemory < c.SpoofedFlood.Window {
		checks = append(checks, errorf("spoofed_flood.source_memory: must be at least spoofed_flood.window (%v), not %v",
			c.SpoofedFlood.Window, c.SpoofedFlood.SourceMemory))
	}
	if len(c.SpoofedFlood.Ports) > 0 {
		s.spoofPorts = &PortSet{}
		checks = append(checks, ports("spoofed_flood.ports", c.SpoofedFlood.Ports, s.spoofPorts))
	}
	for _, err := range checks {
		if err != nil {
			return nil, err
		}
	}
	allow := [NumKinds][]string{
		KindReflection: c.Reflection.Allow, KindLoop: c.Loop.Allow,
		KindSpoofedFlood: c.SpoofedFlood.Allow, KindScan: c.Scan.Allow, KindExposed: c.Exposed.Allow,
	}
	for k, list := range allow {
		if s.allow[k], err = parsePrefixes(Kind(k).String()+".allow", list); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// maxScanHosts bounds scan.hosts: the distinct-host estimate is exact
// enough well below its bitmap's size.
const maxScanHosts = 1000

func positive(name string, v float64) error {
	if !(v > 0) {
		return errorf("%s: must be positive, not %v", name, v)
	}
	return nil
}

// positiveDur checks a period of packet time: at least a second, the
// sweep's step, and at most 30 days, far below where adding it to a time
// could overflow.
func positiveDur(name string, d time.Duration) error {
	if d < time.Second || d > 30*24*time.Hour {
		return errorf("%s: must be between 1s and 720h, not %v", name, d)
	}
	return nil
}

func window(name string, d time.Duration) error {
	if d < time.Second || d > 24*time.Hour {
		return errorf("%s: must be between 1s and 24h, not %v", name, d)
	}
	return nil
}

func atLeast(name string, v, min int) error {
	if v < min {
		return errorf("%s: must be at least %d, not %d", name, min, v)
	}
	return nil
}

func between(name string, v, min, max int) error {
	if v < min || v > max {
		return errorf("%s: must be between %d and %d, not %d", name, min, max, v)
	}
	return nil
}

func share(name string, v float64) error {
	if !(v > 0 && v <= 1) {
		return errorf("%s: must be above 0 and at most 1, not %v", name, v)
	}
	return nil
}

func prefixLen(name string, v, max int) error {
	if v < 0 || v > max {
		return errorf("%s: must be between 0 (off) and %d, not %d", name, max, v)
	}
	return nil
}

func ports(name string, list []uint16, into *PortSet) error {
	if len(list) == 0 {
		return errorf("%s: must list at least one port", name)
	}
	for _, p := range list {
		if p == 0 {
			return errorf("%s: port 0 is not a service port", name)
		}
		into.Add(p)
	}
	return nil
}

// prefixSet is a short list of networks, searched in order.
type prefixSet []netip.Prefix

// parsePrefixes parses CIDRs and single addresses (a host route).
func parsePrefixes(name string, list []string) (prefixSet, error) {
	var s prefixSet
	for _, v := range list {
		v = strings.TrimSpace(v)
		var p netip.Prefix
		var err error
		if strings.Contains(v, "/") {
			p, err = netip.ParsePrefix(v)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(v); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || p.Addr().Zone() != "" {
			return nil, errorf("%s: %q is not a CIDR or an address", name, v)
		}
		s = append(s, p.Masked())
	}
	return s, nil
}

// contains reports whether a is in one of the networks. IPv4-mapped IPv6
// addresses match IPv4 networks.
func (s prefixSet) contains(a netip.Addr) bool {
	if len(s) == 0 {
		return false
	}
	a = a.Unmap()
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
