package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/echowatch/echowatch/capture"
)

// reportInputs writes, at the end of a run, the warnings the capture files
// gave, and what files with interfaces of link types echowatch does not
// decode held of them. It returns an error naming the files that were not
// read whole (damaged, unreadable, or of link types echowatch does not
// decode), which makes an offline run exit 1: something was lost. A file
// cut short is not one: its frames up to the cut were read, as a capture
// still being written is read.
func reportInputs(stderr io.Writer, warnings []error, src capture.Source) error {
	for _, w := range warnings {
		if errors.Is(w, capture.ErrTruncated) {
			fmt.Fprintf(stderr, "echowatch: warning: %v; the alerts up to that point were reported\n", w)
		} else {
			fmt.Fprintf(stderr, "echowatch: warning: %v\n", w)
		}
	}
	stats, ok := fileStatsOf(src)
	if !ok {
		return nil
	}
	var lost []string
	for _, st := range stats() {
		name := st.Name
		if name == "-" {
			name = "stdin"
		}
		if st.Undecoded > 0 && !errors.Is(st.Err, capture.ErrUnsupportedLinkType) {
			plural := ""
			if len(st.UndecodedLinkTypes) > 1 {
				plural = "s"
			}
			fmt.Fprintf(stderr, "echowatch: warning: capture: %s: %d packets of link type%s %s not decoded\n",
				name, st.Undecoded, plural, capture.LinkTypeNames(st.UndecodedLinkTypes))
		}
		switch {
		case st.Damaged > 0:
			stretches := "stretch"
			if st.Damaged > 1 {
				stretches = "stretches"
			}
			lost = append(lost, fmt.Sprintf("%s (%d damaged %s, %d bytes skipped)", name, st.Damaged, stretches, st.Skipped))
		case st.Err != nil && !errors.Is(st.Err, capture.ErrTruncated):
			lost = append(lost, name)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	return fmt.Errorf("capture: not read whole: %s", strings.Join(lost, ", "))
}
