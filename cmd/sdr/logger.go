package main

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// output is what a run writes for people: the logger, and the console
// under it, which on a terminal also keeps a progress line.
type output struct {
	log   *zap.Logger
	con   *console
	close func() // erases the progress line and closes the log file
}

// progressKey is the field of a periodic progress entry (see
// consoleProgress). The console drops the field, and on a terminal the
// whole entry, since the progress line shows the same; the log file
// keeps both.
const progressKey = "progress"

// newOutput builds the console logger on w and, when logFile is set, a
// JSON-lines logger into that file.
func newOutput(w io.Writer, logFile string, verbose bool) (*output, error) {
	return newOutputOn(newConsole(w), logFile, verbose)
}

func newOutputOn(con *console, logFile string, verbose bool) (*output, error) {
	level := zapcore.InfoLevel
	if verbose {
		level = zapcore.DebugLevel
	}
	encCfg := zapcore.EncoderConfig{
		TimeKey: "t", LevelKey: "level", MessageKey: "msg",
		EncodeTime:       zapcore.TimeEncoderOfLayout("15:04:05"),
		EncodeLevel:      zapcore.CapitalLevelEncoder,
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	}
	cores := []zapcore.Core{&consoleCore{Core: zapcore.NewCore(zapcore.NewConsoleEncoder(encCfg), con, level), tty: con.tty}}
	closeFn := con.clear
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, usagef("--log-file %s: %w", logFile, err)
		}
		jcfg := zap.NewProductionEncoderConfig()
		jcfg.TimeKey, jcfg.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
		jcfg.EncodeDuration = zapcore.StringDurationEncoder
		cores = append(cores, zapcore.NewCore(zapcore.NewJSONEncoder(jcfg), zapcore.AddSync(f), zapcore.DebugLevel))
		closeFn = func() { con.clear(); _ = f.Sync(); _ = f.Close() }
	}
	return &output{log: zap.New(zapcore.NewTee(cores...)), con: con, close: closeFn}, nil
}

// consoleCore keeps console lines short: run_id is dropped (it is in the
// log file and in `sdr status`), and step becomes a prefix of the message.
// A periodic progress entry (with a progressKey field) is shown without
// that field, and not at all on a terminal, whose progress line says it.
type consoleCore struct {
	zapcore.Core
	step string
	tty  bool
}

func (c *consoleCore) With(fields []zapcore.Field) zapcore.Core {
	step, keep := splitStep(c.step, fields)
	return &consoleCore{Core: c.Core.With(keep), step: step, tty: c.tty}
}

// splitStep drops run_id and takes step out of fields.
func splitStep(step string, fields []zapcore.Field) (string, []zapcore.Field) {
	var keep []zapcore.Field
	for _, f := range fields {
		switch f.Key {
		case "run_id", progressKey:
		case "step":
			step = f.String
		default:
			keep = append(keep, f)
		}
	}
	return step, keep
}

func (c *consoleCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *consoleCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if c.tty && hasField(fields, progressKey) {
		return nil
	}
	step, keep := splitStep(c.step, fields)
	if step != "" && step != "-" {
		e.Message = fmt.Sprintf("%-22s %s", step, e.Message)
	}
	return c.Core.Write(e, keep)
}

func hasField(fields []zapcore.Field, key string) bool {
	for _, f := range fields {
		if f.Key == key {
			return true
		}
	}
	return false
}
