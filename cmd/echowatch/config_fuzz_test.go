package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig feeds arbitrary bytes to the configuration loader and the
// validation that follows it: whatever the file says, the result is a
// config or an error, never a panic.
func FuzzConfig(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "echowatch.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)                                             // every key, every default
	f.Add([]byte("home_net: [192.0.2.0/24, 2001:db8::/32]\n")) // the usual one
	f.Add([]byte("reflection: {pps: -1, window: 0s}\n"))       // out of range
	f.Add([]byte("scan:\n  hosts: 99999999999999999999\n"))    // overflow
	f.Add([]byte("loop: {ports: [70000]}\n"))                  // not a port
	f.Add([]byte("end_after: forever\n"))                      // not a duration
	f.Add([]byte("evidence: {max_bytes: 9999999TiB}\n"))       // a size past int64
	f.Add([]byte("a: &a [*a]\n"))                              // alias loop
	f.Add([]byte("- just\n- a list\n"))                        // wrong shape
	f.Add([]byte("\xff\xfe\x00"))                              // not text
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := defaultConfig()
		if err := loadConfigFile(path, &cfg); err != nil {
			return
		}
		cfg.Read = []string{"x.pcap"}
		cfg.Interface = ""
		_ = cfg.validate()
	})
}
