//go:build !failpoints

package workflow

// FailpointsEnabled reports whether this binary was built with the failpoints tag.
const FailpointsEnabled = false

func hitFailpoint(string, FailpointName) error { return nil }
