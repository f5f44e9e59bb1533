package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/internal/corpus"
)

func regexpMust(re string) *regexp.Regexp { return regexp.MustCompile(re) }

// TestCorpus runs every capture of ../shared/corpus (real captures written
// by others: odd link types, broken and foreign files) through echowatch:
// no panic, no hang, exit 0 with at most a warning, exit 1 with one line
// that names the file, or, for a file read with damage skipped or of link
// types echowatch does not decode, exit 1 with warnings and a last line
// that says the file was not read whole; and any of these with warnings
// of frames it could not look into.
func TestCorpus(t *testing.T) {
	root := corpus.Dir(t, "corpus")
	var files []string
	for _, sub := range []string{"echo", "robust"} {
		m, _ := filepath.Glob(filepath.Join(root, sub, "*"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no captures in %s/{echo,robust}", root)
	}
	var ok, warned, refused, lost, blind, clocked int
	for _, f := range files {
		done := make(chan struct{})
		var code int
		var out, errOut string
		go func() {
			defer close(done)
			code, out, errOut = runMain(t, nil, "-r", f, "--format", "eve", "--stats")
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no result after 30 s", f)
		}
		base := filepath.Base(f)
		// Frames it could not look into (tunnels of kinds it does not
		// decode, broken ones) are warned of apart, once per kind.
		if blindSpotLine.MatchString(errOut) {
			blind++
			errOut = blindSpotLine.ReplaceAllString(errOut, "")
		}
		// So is a capture clock that steps back or impossible times,
		// which real captures have.
		if clockLine.MatchString(errOut) {
			clocked++
			t.Logf("%s: %s", base, strings.TrimSpace(strings.Join(clockLine.FindAllString(errOut, -1), "")))
			errOut = clockLine.ReplaceAllString(errOut, "")
		}
		notWhole := code == 1 && strings.HasPrefix(errOut, "echowatch: warning: ") &&
			regexpMust(`\nechowatch: capture: not read whole: .*`+regexp.QuoteMeta(base)+`.*\n$`).MatchString(errOut)
		switch {
		case code == 0 && errOut == "":
			ok++
		case code == 0 && strings.HasPrefix(errOut, "echowatch: warning: ") && strings.Count(errOut, "\n") == 1 && strings.Contains(errOut, base):
			warned++
		case code == 1 && strings.HasPrefix(errOut, "echowatch: ") && strings.Count(errOut, "\n") == 1 && strings.Contains(errOut, base):
			refused++
		case notWhole:
			lost++
		default:
			t.Errorf("%s: exit %d, stderr %q", base, code, errOut)
		}
		if (code == 0 || notWhole) && !strings.Contains(out, `"event_type":"stats"`) {
			t.Errorf("%s: no stats event", base)
		}
	}
	t.Logf("%d captures: %d read, %d read up to a cut, %d refused, %d not read whole; %d with frames not looked into, %d with a clock that misbehaves",
		len(files), ok, warned, refused, lost, blind, clocked)
}

// blindSpotLine is a warning of frames not looked into (see blindSpots).
var blindSpotLine = regexp.MustCompile(`(?m)^echowatch: warning: [\d,]+ [^\n]* \(stats: echowatch\.decoder\.[a-z0-9_.-]+\)\n`)

// clockLine is a warning of a capture's clock that stepped back, or of
// impossible times (see blindSpots.checkClock).
var clockLine = regexp.MustCompile(`(?m)^echowatch: warning: [^\n]* \(stats: echowatch\.detect\.time_(steps_back|invalid)\)\n`)

// TestCorpusEchoFindings checks what the corpus's echo captures must give:
// findings of exposure, never floods.
func TestCorpusEchoFindings(t *testing.T) {
	root := corpus.Dir(t, "corpus", "echo")
	_, out, _ := runMain(t, nil, "-r", filepath.Join(root, "spicy-wireshark__echo.pcap"), "--format", "eve")
	if !strings.Contains(out, `"kind":"exposed"`) {
		t.Errorf("an echo request and its reply should show the host exposed:\n%s", out)
	}
	for _, name := range []string{"zeek__echo-connections.pcap.gz", "wireshark-wiki__chargen-udp.pcap", "wireshark-wiki__chargen-tcp.pcap"} {
		code, out, errOut := runMain(t, nil, "-r", filepath.Join(root, name), "--format", "eve")
		if code != 0 {
			t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
		}
		if strings.Contains(out, `"kind":"spoofed_flood"`) {
			t.Errorf("%s: a flood reported in ordinary echo traffic:\n%s", name, out)
		}
	}
}
