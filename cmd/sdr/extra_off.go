//go:build !failpoints

package main

import "github.com/urfave/cli/v2"

// extraCommands are test-only commands; none in a normal build.
func extraCommands() []*cli.Command { return nil }
