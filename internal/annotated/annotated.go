// Package annotated reads the annotated hex that tests write packets and
// files in: one field a line, "//" starting a comment, white space ignored.
package annotated

import (
	"encoding/hex"
	"strings"
	"testing"
)

// Hex returns the bytes that annotated hex spells, failing the test when it
// is not hex.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "//")
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	data, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatalf("bad annotated hex: %v", err)
	}
	return data
}
