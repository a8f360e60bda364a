package workflow

// FailpointName names a point in a step's life where a failpoint can fire.
type FailpointName string

// The failpoints the runner offers for every step.
const (
	// FailBefore fires after the step is recorded as started, before it runs.
	FailBefore FailpointName = "before"
	// FailAfterEffects fires after the step's side effects, before its
	// done checkpoint: the case a rerun must handle by re-checking reality.
	FailAfterEffects FailpointName = "after-effects"
	// FailAfterCheckpoint fires right after the done checkpoint.
	FailAfterCheckpoint FailpointName = "after-checkpoint"
)

// FailpointEnv is the environment variable read by binaries built with the
// failpoints tag. Its value is "STEP:POINT[:ACTION]", for example
// "7_build_standby:after-effects:kill". ACTION is error (the default: the
// step fails), panic (the step panics) or kill (the process sends itself
// SIGKILL, as a crash would). Several entries may be separated by commas.
const FailpointEnv = "SDR_FAILPOINT"
