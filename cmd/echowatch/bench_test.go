package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// BenchmarkSense runs the whole pipeline (read, decode, flows, detection,
// the EVE sink) on the capture that ECHOWATCH_BENCH names, so that
// `go test -bench Sense -cpuprofile` shows where a real run spends its time:
//
//	ECHOWATCH_BENCH=../../bench/out/mixed-10000000.pcap go test -run '^$' -bench Sense -benchtime 1x -cpuprofile cpu.out ./cmd/echowatch
//
// ECHOWATCH_BENCH_ARGS adds flags (e.g. "--workers 2").
func BenchmarkSense(b *testing.B) {
	file := os.Getenv("ECHOWATCH_BENCH")
	if file == "" {
		b.Skip("ECHOWATCH_BENCH names no capture")
	}
	args := append([]string{"-r", file, "--format", "eve"}, strings.Fields(os.Getenv("ECHOWATCH_BENCH_ARGS"))...)
	for b.Loop() {
		if code := run(args, nil, io.Discard, os.Stderr); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
