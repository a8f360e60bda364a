//go:build failpoints

package workflow

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// FailpointsEnabled reports whether this binary was built with the failpoints tag.
const FailpointsEnabled = true

// hitFailpoint acts on SDR_FAILPOINT when step and point match an entry.
func hitFailpoint(step string, point FailpointName) error {
	for _, spec := range strings.Split(os.Getenv(FailpointEnv), ",") {
		parts := strings.Split(strings.TrimSpace(spec), ":")
		if len(parts) < 2 || parts[0] != step || FailpointName(parts[1]) != point {
			continue
		}
		action := "error"
		if len(parts) > 2 {
			action = parts[2]
		}
		switch action {
		case "panic":
			panic(fmt.Sprintf("failpoint %s:%s", step, point))
		case "kill":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // wait for the signal to land
		default:
			return fmt.Errorf("failpoint %s:%s", step, point)
		}
	}
	return nil
}
