package capture

// SetRegionSize makes Split cut regions of n bytes, and returns a function
// that restores the size.
func SetRegionSize(n int64) (restore func()) {
	old := regionSize
	regionSize = n
	return func() { regionSize = old }
}
