package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// outFile is one file of the committed tree.
type outFile struct {
	path string // slash-separated, relative to the output directory
	data []byte
	// packets is the number of frames of a capture; 0 for other files.
	packets int
}

// caseSummary is what pcaps/README.md says about one capture.
type caseSummary struct {
	scenario
	path     string
	packets  int
	duration time.Duration
}

// generate returns every committed file, in a fixed order.
func generate() ([]outFile, error) {
	var files []outFile
	var cases []caseSummary
	add := func(s scenario, p string) error {
		data, n, d, err := s.generate()
		if err != nil {
			return err
		}
		if len(s.tap) > 0 {
			a, b, na, nb, err := tapOutputs(data, s.tap)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			dir := path.Dir(p)
			files = append(files, outFile{path: dir + "/capture-a.pcap", data: a, packets: na},
				outFile{path: dir + "/capture-b.pcap", data: b, packets: nb})
			p = dir + "/capture-{a,b}.pcap"
		} else {
			files = append(files, outFile{path: p, data: data, packets: n})
		}
		if c := s.config(); c != nil {
			files = append(files, outFile{path: path.Join(path.Dir(p), "config.yaml"), data: c})
		}
		cases = append(cases, caseSummary{scenario: s, path: p, packets: n, duration: d})
		return nil
	}
	for _, s := range scenarios() {
		if err := add(s, s.name+"/capture.pcap"); err != nil {
			return nil, err
		}
	}
	if err := add(demo(), "demo.pcap"); err != nil {
		return nil, err
	}
	formats := formatFiles()
	for _, f := range formats {
		files = append(files, outFile{path: "formats/" + f.name, data: f.data, packets: f.packets})
	}
	files = append(files,
		outFile{path: "README.md", data: pcapsReadme(cases)},
		outFile{path: "formats/README.md", data: formatsReadme(formats)},
	)
	return files, nil
}

// generateTo writes every committed file under dir.
func generateTo(dir string, log logf) error {
	files, err := generate()
	if err != nil {
		return err
	}
	total := 0
	for _, f := range files {
		name := filepath.Join(dir, filepath.FromSlash(f.path))
		changed, err := writeIfChanged(name, f.data)
		if err != nil {
			return err
		}
		total += len(f.data)
		state := "unchanged"
		if changed {
			state = "written"
		}
		if f.packets > 0 {
			log("%s: %d packets, %d bytes, %s", name, f.packets, len(f.data), state)
		} else {
			log("%s: %d bytes, %s", name, len(f.data), state)
		}
	}
	log("%d files, %d bytes in all", len(files), total)
	return nil
}

// writeIfChanged replaces name with data through a temporary file and a
// rename, so an interrupted run never leaves half a capture, and leaves a
// file that already holds data untouched.
func writeIfChanged(name string, data []byte) (changed bool, err error) {
	old, err := os.ReadFile(name)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".pcapgen-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", name, err)
	}
	return true, os.Rename(tmp.Name(), name)
}

// pcapsReadme renders pcaps/README.md.
func pcapsReadme(cases []caseSummary) []byte {
	var b strings.Builder
	b.WriteString(`# Captures

Every capture here, the ` + "`config.yaml`" + ` files listed below and both READMEs are
written by ` + "`cmd/pcapgen`" + `, deterministically: the same bytes on every run and every
machine. Regenerate them all from the repository root with

    go run ./cmd/pcapgen

and commit the result; ` + "`go test ./cmd/pcapgen`" + ` fails when a committed file differs
from what the generator writes. This README is generated too (edit the texts in
cmd/pcapgen, not here).

## Layout

- ` + "`<case>/capture.pcap`" + `: one detection case; a case in several files
  (` + "`capture-a.pcap`" + `, ` + "`capture-b.pcap`" + `) is read as one timeline merged by
  time. ` + "`<case>/alerts.json`" + ` holds its
  golden alerts, the exact EVE lines expected (empty for the benign cases but
  benign-echo-monitor, whose one exposed finding it holds). The golden test in
  internal/sensor runs the sensor on every case with one worker and with three
  and compares; ` + "`go test ./internal/sensor -run Golden -update`" + ` rewrites
  alerts.json, which pcapgen does not write. ` + "`<case>/config.yaml`" + `, where present,
  is written by pcapgen and sets what the case needs (its ` + "`home_net`" + `, a VXLAN
  port, a dedup window).
- ` + "`demo.pcap`" + `: the README's quick start.
- ` + "`formats/`" + `: one small echo exchange in every link type and file format the
  reader supports; see formats/README.md for exact packet counts.

All detection captures are classic little-endian pcap, microsecond timestamps,
Ethernet, and start at 2024-03-19T12:00:00Z. Hosts use documentation and
benchmark space (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15,
2001:db8::/32) except the forged sources of the flood cases; "our" network is
198.51.100.0/24. Note that these ranges are themselves special-purpose blocks
(RFC 6890): a bogon check that includes them would flag every case.

The cases with a lifecycle share one timeline: the attack runs from ` + seconds(attackFrom) + ` to
` + seconds(attackTo) + ` and ordinary DNS lookups (198.51.100.100 asking 198.51.100.53 every 2 s)
go on until ` + seconds(tailTo) + `, so that an incident starts in the first seconds, gets its
first update 60 s after its start (after the attack, in the 60 s it takes to
end), and ends 60 s after the attack stops, all before the input ends. The
senders of an attack each send a different number of packets, so "top
reflectors" has one right order.

The tunnel cases, from vxlan on, carry the same kinds of attack inside an
encapsulation, each frame wrapped as a mirror session, an overlay or a
carrier network delivers it. Their attacks are shorter, from ` + seconds(tunnelFrom) + ` to ` + seconds(tunnelTo) + `,
on the same tail of lookups; the tunnels' own endpoints (the underlay) use
198.19.0.0/16 and 2001:db8:ffff::/48. Each holds a reflection and a loop
whose golden alerts are a start, an update and an end of each.

Benchmark captures are not committed; make them with

    go run ./cmd/pcapgen -bench mixed -o /tmp/mixed.pcap    # 10M packets, ~100k flows
    go run ./cmd/pcapgen -bench flood -o /tmp/flood.pcap    # 5M packets, a new source each

## Cases

| Capture | Packets | First to last packet | Config |
|---|---|---|---|
`)
	for _, c := range cases {
		cfg := ""
		if conf := c.config(); conf != nil {
			cfg = "`" + strings.TrimSpace(string(conf)) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s |\n", c.path, c.packets, seconds(c.duration), cfg)
	}
	for _, c := range cases {
		fmt.Fprintf(&b, "\n### %s\n\n%s\n", c.name, c.about)
	}
	return []byte(b.String())
}

// seconds formats a duration as README text: "22 s", "97.9 s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + " s"
}
