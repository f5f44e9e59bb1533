package detect

// Reconfigure replaces the Engine's settings while it runs, keeping its
// tables and open incidents: thresholds, allow lists, home_net, port sets
// (ports added or removed), sensor_name, update_interval, end_after,
// max_alerts_per_second, scan and exposed rearm. It returns an error
// naming the first setting it cannot take, and then changes nothing.
// Refused while running:
//   - table capacities (max_*), which size tables allocated once;
//   - windows and reflection prefix lengths, which key the rate meters,
//     scan bitmaps and prefix table of the entries already kept.
//
// Like Packet, Reconfigure must be called on the Engine's goroutine, which
// is the flow table's too (see FlowPorts): the flows of a port added are
// tracked from the next packet.
func (e *Engine) Reconfigure(cfg Config) error {
	s, err := cfg.compile()
	if err != nil {
		return err
	}
	if err := e.cfg.fixedAsIn(&cfg); err != nil {
		return err
	}
	e.apply(&cfg, s)
	return nil
}

// fixedAsIn returns an error naming the first setting that differs between
// c and n and cannot change while an Engine runs.
func (c *Config) fixedAsIn(n *Config) error {
	const resize, rekey = "restart to resize", "restart to change it"
	for _, f := range []struct {
		name     string
		old, new any
		why      string
	}{
		{"reflection.max_victims", c.Reflection.MaxVictims, n.Reflection.MaxVictims, resize},
		{"loop.max_pairs", c.Loop.MaxPairs, n.Loop.MaxPairs, resize},
		{"spoofed_flood.max_targets", c.SpoofedFlood.MaxTargets, n.SpoofedFlood.MaxTargets, resize},
		{"scan.max_scanners", c.Scan.MaxScanners, n.Scan.MaxScanners, resize},
		{"exposed.max_findings", c.Exposed.MaxFindings, n.Exposed.MaxFindings, resize},
		{"reflection.window", c.Reflection.Window, n.Reflection.Window, rekey},
		{"loop.window", c.Loop.Window, n.Loop.Window, rekey},
		{"spoofed_flood.window", c.SpoofedFlood.Window, n.SpoofedFlood.Window, rekey},
		{"scan.window", c.Scan.Window, n.Scan.Window, rekey},
		{"reflection.prefix_v4", c.Reflection.PrefixV4, n.Reflection.PrefixV4, rekey},
		{"reflection.prefix_v6", c.Reflection.PrefixV6, n.Reflection.PrefixV6, rekey},
	} {
		if f.old != f.new {
			return errorf("%s: cannot change while running (%s)", f.name, f.why)
		}
	}
	return nil
}
