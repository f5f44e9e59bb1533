//go:build !linux

package capture

import "os"

// openInput opens a capture file to read. Elsewhere than on Linux, a named
// pipe is opened as any file: open(2) waits for its writer.
func openInput(name string) (*os.File, error) { return os.Open(name) }

// awaitWriter has nothing to wait for: openInput waited.
func awaitWriter(*os.File) error { return nil }
