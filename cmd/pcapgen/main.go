// Command pcapgen writes every capture committed under pcaps/ (the
// detection cases with their config, the quick-start demo, the format and
// link-type files, and their READMEs) deterministically: the same bytes on
// every run and every machine. With -bench it writes large benchmark
// captures, which are not committed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `Usage:
  pcapgen [-v] [-out DIR]
  pcapgen -bench KIND [-packets N] [-flows N] [-wrap vxlan] [-v] -o FILE
  pcapgen -bench telemetry -from FILE [-exporters N] [-packets N] [-v] -o FILE

The first form writes every committed capture under DIR (default pcaps):
one folder per detection case (capture.pcap, and config.yaml where the case
needs settings), demo.pcap, formats/ and the READMEs. The output is the same,
byte for byte, on every run; files whose content is unchanged are left alone.

The second form writes a benchmark capture to FILE (- for standard output):
  mixed  ordinary TCP and UDP over about -flows flows, IPv4 and IPv6, some on
         VLANs, with an echo reflection and an echo-chargen loop inside
         (default 10000000 packets)
  flood  UDP to 198.51.100.77 port 7, every packet from a new random source
         (default 5000000 packets)

and the memory floods, each with the same real incidents planted inside (an
echo reflection toward 198.51.100.10, an echo-chargen loop between
198.51.100.7 and 198.51.100.19), over 40 s, then a packet a second to 130 s:
  sources     every packet from a new IPv4 or IPv6 source to one echo port
              (default 10000000 packets)
  targets     echo requests and replies to 1000000 random targets, from new
              sources (default 10000000 packets)
  echo-flows  two-way echo flows, each between two new addresses
              (default 4000000 packets: 2000000 flows)
  loop-flows  two-way flows on every pair of the loop ports, each between
              two new addresses (default 4000000 packets: 2000000 flows)

and router telemetry:
  telemetry   the datagrams of -from (a capture of what an exporter sent:
              Ethernet, IPv4, UDP, such as capture/testdata/telemetry/*.pcap)
              over and over, each pass of the file later than the one
              before and sent from the next of -exporters addresses
              (10.0.0.1 up, default 1), so that each gets the templates
              before its data (default 1000000 datagrams)

With -wrap vxlan every frame of the benchmark capture is inside VXLAN (UDP
4789, VNI 1234567, from 198.19.1.10 to 198.19.2.20), as a cloud traffic
mirror delivers it: the same traffic, to compare the cost of decapsulation.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit: it returns 0 on success, 1 when writing
// fails, 2 on a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pcapgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // -h prints the usage to stdout below; errors only a hint
	outDir := fs.String("out", "pcaps", "write the committed captures under `DIR`")
	bench := fs.String("bench", "", "write a benchmark capture of `KIND` instead (see above)")
	packets := fs.Int("packets", 0, "`N` packets in the benchmark capture (0: the kind's default)")
	flows := fs.Int("flows", 100000, "`N` flows in the mixed benchmark capture")
	outFile := fs.String("o", "", "write the benchmark capture to `FILE` (- for standard output)")
	wrap := fs.String("wrap", "", "encapsulate every benchmark frame in `KIND` (vxlan)")
	from := fs.String("from", "", "-bench telemetry: repeat the datagrams of `FILE`")
	exporters := fs.Int("exporters", 1, "-bench telemetry: send from `N` exporters in turn")
	verbose := fs.Bool("v", false, "say what was written, to standard error")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err != nil { // the flag package has said what is wrong
		fmt.Fprintln(stderr, "Run pcapgen -h for usage.")
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pcapgen: "+format+"\n", a...)
		fmt.Fprintln(stderr, "Run pcapgen -h for usage.")
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected argument %q", fs.Arg(0))
	case *bench == "":
		for _, f := range []string{"o", "packets", "flows", "wrap", "from", "exporters"} {
			if set[f] {
				return usageError("-%s needs -bench", f)
			}
		}
	case *bench != "mixed" && *bench != "flood" && *bench != "telemetry" && floodKinds[*bench].flood == nil:
		return usageError("-bench %q: want mixed, flood, sources, targets, echo-flows, loop-flows or telemetry", *bench)
	case (*bench == "telemetry") != (*from != ""):
		return usageError("-from FILE goes with -bench telemetry, and only with it")
	case set["exporters"] && *bench != "telemetry":
		return usageError("-exporters applies to -bench telemetry only")
	case *exporters < 1 || *exporters > 1<<24:
		return usageError("-exporters %d: want 1 to 16777216", *exporters)
	case set["out"]:
		return usageError("-out writes the committed captures; with -bench use -o")
	case *outFile == "":
		return usageError("-bench needs -o FILE")
	case *packets < 0:
		return usageError("-packets %d: want a positive count", *packets)
	case *flows < 1:
		return usageError("-flows %d: want a positive count", *flows)
	case set["flows"] && *bench != "mixed":
		return usageError("-flows applies to -bench mixed only")
	case *wrap != "" && *wrap != "vxlan":
		return usageError("-wrap %q: want vxlan", *wrap)
	}

	if *bench != "" {
		err = writeBench(benchSpec{kind: *bench, wrap: *wrap, packets: *packets, flows: *flows, from: *from, exporters: *exporters},
			*outFile, stdout, logTo(stderr, *verbose))
	} else {
		err = generateTo(*outDir, logTo(stderr, *verbose))
	}
	if err != nil {
		fmt.Fprintf(stderr, "pcapgen: %v\n", err)
		return 1
	}
	return 0
}

// logf reports progress; it is a no-op unless -v was given.
type logf func(format string, a ...any)

func logTo(w io.Writer, verbose bool) logf {
	if !verbose {
		return func(string, ...any) {}
	}
	return func(format string, a ...any) { fmt.Fprintf(w, "pcapgen: "+format+"\n", a...) }
}
