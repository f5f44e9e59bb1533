package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/report"
)

// captureStart returns the time of the first frame the run read from its
// capture files, the start of the report's time axis; zero for a live
// capture, or when no file had a frame.
func captureStart(src capture.Source) time.Time {
	var start time.Time
	if stats, ok := fileStatsOf(src); ok {
		for _, st := range stats() {
			if !st.First.IsZero() && (start.IsZero() || st.First.Before(start)) {
				start = st.First
			}
		}
	}
	return start
}

// writeForensics writes, at the end of a run, what its flags ask for: the
// --summary JSON document (summaryPath), the --report page (reportPath)
// and the summary table on table, unless table is nil (stderr is not a
// terminal). Empty paths are skipped.
func writeForensics(log *report.Log, summaryPath, reportPath string, meta report.Meta, table io.Writer) error {
	var errs []error
	if summaryPath != "" {
		var b bytes.Buffer
		log.WriteJSON(&b)
		if err := os.WriteFile(summaryPath, b.Bytes(), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("--summary: %w", err))
		}
	}
	if reportPath != "" {
		if abs, err := filepath.Abs(reportPath); err == nil {
			meta.Dir = filepath.Dir(abs)
		}
		var b bytes.Buffer
		if err := log.WriteHTML(&b, meta); err != nil {
			errs = append(errs, fmt.Errorf("--report: %w", err))
		} else if err := os.WriteFile(reportPath, b.Bytes(), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("--report: %w", err))
		}
	}
	if table != nil {
		log.WriteTable(table)
	}
	return errors.Join(errs...)
}

// checkCreatable checks at start-up that the --summary and --report files,
// written at the end of the run, can be written then: a mistake is said
// before the capture is read rather than after. A file it had to create
// to find out is removed again.
func checkCreatable(summaryPath, reportPath string) error {
	for _, c := range []struct{ flag, path string }{{"--summary", summaryPath}, {"--report", reportPath}} {
		if c.path == "" {
			continue
		}
		flags := os.O_WRONLY
		st, err := os.Stat(c.path)
		switch {
		case err == nil && !st.Mode().IsRegular():
			continue // /dev/stdout or a FIFO: opening could block
		case err != nil && errors.Is(err, os.ErrNotExist):
			flags |= os.O_CREATE | os.O_EXCL
		}
		f, err := os.OpenFile(c.path, flags, 0o644)
		created := err == nil && flags&os.O_CREATE != 0
		if err != nil {
			return fmt.Errorf("%s: %w", c.flag, err)
		}
		f.Close()
		if created {
			os.Remove(c.path)
		}
	}
	return nil
}
