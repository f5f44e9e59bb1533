// Package corpus finds the reference data beside the project (../shared
// from the module root: real captures written by others, Suricata's EVE
// schema) for tests that read it.
//
// A checkout without that folder skips such tests with a message; CI sets
// ECHOWATCH_REQUIRE_CORPUS=1, which turns the skip into a failure, so that
// the tests always run there.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireEnv is the environment variable that makes a missing shared
// folder fail the test instead of skipping it.
const RequireEnv = "ECHOWATCH_REQUIRE_CORPUS"

// Dir returns the path of elem under the shared folder (Dir(t, "corpus",
// "echo") is ../shared/corpus/echo from the module root). When it does not
// exist, t skips, or fails if RequireEnv is set.
func Dir(t testing.TB, elem ...string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("corpus: no go.mod above the test's directory")
		}
		dir = up
	}
	path := filepath.Join(append([]string{dir, "..", "shared"}, elem...)...)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("corpus: %v (%s is set: the shared folder must be there)", err, RequireEnv)
		}
		t.Skipf("no %s (a checkout without ../shared)", path)
	}
	return path
}
