package kind

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	kindlog "sigs.k8s.io/kind/pkg/log"
)

// kindLogger passes kind's messages to a slog.Logger: its user-facing
// status lines (V(0)) at Info, its detail (V(1) and up) at Debug, its
// warnings and errors as such. Messages keep kind's words, trimmed, under
// the key "says".
type kindLogger struct {
	log *slog.Logger
}

var _ kindlog.Logger = kindLogger{}

// expected are kind's warnings about what this provider does on purpose
// (the docker network it chose); they are logged at Debug.
var expected = []string{
	"Overriding docker network due to KIND_EXPERIMENTAL_DOCKER_NETWORK",
	"Here be dragons",
}

func (l kindLogger) emit(level slog.Level, msg string) {
	msg = strings.TrimSpace(msg)
	if msg == "" || !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, "kind", "says", msg)
}

func (l kindLogger) Warn(message string) {
	for _, e := range expected {
		if strings.Contains(message, e) {
			l.emit(slog.LevelDebug, message)
			return
		}
	}
	l.emit(slog.LevelWarn, message)
}

func (l kindLogger) Warnf(format string, args ...any) { l.Warn(fmt.Sprintf(format, args...)) }
func (l kindLogger) Error(message string)             { l.emit(slog.LevelError, message) }
func (l kindLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelError, fmt.Sprintf(format, args...))
}

func (l kindLogger) V(level kindlog.Level) kindlog.InfoLogger {
	lv := slog.LevelInfo
	if level > 0 {
		lv = slog.LevelDebug
	}
	return infoLogger{l: l, level: lv}
}

type infoLogger struct {
	l     kindLogger
	level slog.Level
}

func (i infoLogger) Info(message string) { i.l.emit(i.level, message) }
func (i infoLogger) Infof(format string, args ...any) {
	i.l.emit(i.level, fmt.Sprintf(format, args...))
}
func (i infoLogger) Enabled() bool { return i.l.log.Enabled(context.Background(), i.level) }
