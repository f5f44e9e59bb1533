package detect

import "fmt"

// errorf wraps an error with the package's name, as every error detect
// returns names the component at fault.
func errorf(format string, args ...any) error {
	return fmt.Errorf("detect: "+format, args...)
}
