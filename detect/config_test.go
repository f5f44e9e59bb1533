package detect

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ports := cfg.FlowPorts()
	for _, p := range []uint16{7, 11, 13, 17, 19, 37} {
		if !ports.Has(p) {
			t.Errorf("FlowPorts lacks %d", p)
		}
	}
	if ports.Has(53) || ports.Has(123) {
		t.Error("FlowPorts has 53 or 123")
	}
}

func TestConfigYAML(t *testing.T) {
	// The sensor's config file embeds Config inline: its keys are top-level.
	var file struct {
		Detect Config `yaml:",inline"`
		Other  string `yaml:"other"`
	}
	file.Detect = DefaultConfig()
	src := `
other: x
home_net: [192.0.2.0/24, "2001:db8::/32", 198.51.100.7]
sensor_name: edge-1
update_interval: 30s
end_after: 2m
max_alerts_per_second: 5
reflection:
  pps: 80
  window: 10s
  allow: [203.0.113.0/24]
spoofed_flood:
  ports: []
scan:
  hosts: 50
`
	if err := yaml.Unmarshal([]byte(src), &file); err != nil {
		t.Fatal(err)
	}
	c := file.Detect
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SensorName != "edge-1" || c.UpdateInterval != 30*time.Second || c.EndAfter != 2*time.Minute ||
		c.MaxAlertsPerSecond != 5 || c.Reflection.PPS != 80 || c.Reflection.Window != 10*time.Second ||
		c.Reflection.BPS != 1e6 || c.Scan.Hosts != 50 || len(c.SpoofedFlood.Ports) != 0 || len(c.Loop.Ports) != 6 {
		t.Errorf("decoded %+v", c)
	}
	s, _ := c.compile()
	if s.spoofPorts != nil || !s.home.contains(mustAddr("198.51.100.7")) || s.home.contains(mustAddr("198.51.100.8")) ||
		!s.allow[KindReflection].contains(mustAddr("203.0.113.9")) {
		t.Errorf("compiled %+v", s)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		edit func(c *Config)
		want string
	}{
		{func(c *Config) { c.HomeNet = []string{"10.0.0.300/8"} }, `detect: home_net: "10.0.0.300/8" is not a CIDR or an address`},
		{func(c *Config) { c.Reflection.Allow = []string{"nonsense"} }, `detect: reflection.allow: "nonsense" is not a CIDR or an address`},
		{func(c *Config) { c.Scan.Allow = []string{"10.0.0.0/33"} }, `detect: scan.allow: "10.0.0.0/33" is not a CIDR or an address`},
		{func(c *Config) { c.Reflection.PPS = -1 }, "detect: reflection.pps: must be positive, not -1"},
		{func(c *Config) { c.Loop.Ports = nil }, "detect: loop.ports: must list at least one port"},
		{func(c *Config) { c.Exposed.Ports = []uint16{7, 0} }, "detect: exposed.ports: port 0 is not a service port"},
		{func(c *Config) { c.Scan.Window = time.Millisecond }, "detect: scan.window: must be between 1s and 24h, not 1ms"},
		{func(c *Config) { c.EndAfter = 0 }, "detect: end_after: must be between 1s and 720h, not 0s"},
		{func(c *Config) { c.Exposed.Rearm = 1 << 62 }, "detect: exposed.rearm: must be between 1s and 720h, not 1281023h53m38.427387904s"},
		{func(c *Config) { c.SpoofedFlood.RandomShare = 1.5 }, "detect: spoofed_flood.random_share: must be above 0 and at most 1, not 1.5"},
		{func(c *Config) { c.Reflection.PrefixV4 = 33 }, "detect: reflection.prefix_v4: must be between 0 (off) and 32, not 33"},
		{func(c *Config) { c.MaxAlertsPerSecond = -1 }, "detect: max_alerts_per_second: must be between 0 and 1000000, not -1"},
		{func(c *Config) { c.Scan.Hosts = 5000 }, "detect: scan.hosts: must be between 2 and 1000, not 5000"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		if err := c.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("got %v\nwant %s", err, tt.want)
		}
	}
	// A YAML duration must be a duration string.
	var c Config
	err := yaml.Unmarshal([]byte("end_after: 60\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "end_after") && !strings.Contains(err.Error(), "Duration") {
		t.Errorf("integer duration: %v", err)
	}
}
