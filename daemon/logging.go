package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/term"
)

// NewLogger returns palmd's logger on stderr at the level level holds (a
// reload changes it). On a terminal, lines carry their time; under
// systemd, whose journal stamps every line itself, they do not, and each
// line starts with its syslog priority ("<3>" error, "<4>" warning, "<6>"
// info, "<7>" debug), which journald reads (SyslogLevelPrefix=, on by
// default), so `journalctl -p warning -u palmd` finds the warnings.
func NewLogger(level *slog.LevelVar) *slog.Logger {
	inJournal, _ := journal.StderrIsJournalStream()
	return newLogger(os.Stderr, level, term.IsTerminal(int(os.Stderr.Fd())), inJournal)
}

func newLogger(w io.Writer, level *slog.LevelVar, terminal, inJournal bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if !terminal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}
	}
	if inJournal {
		w = &priorityWriter{w: w}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// priorityWriter prefixes each line the text handler writes (one Write
// per record, starting "level=…" once the time is dropped) with its
// syslog priority.
type priorityWriter struct{ w io.Writer }

var priorities = []struct {
	level  []byte
	prefix string
}{
	{[]byte("level=ERROR"), "<3>"},
	{[]byte("level=WARN"), "<4>"},
	{[]byte("level=INFO"), "<6>"},
	{[]byte("level=DEBUG"), "<7>"},
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	prefix := "<6>"
	for _, pr := range priorities {
		if bytes.HasPrefix(b, pr.level) {
			prefix = pr.prefix
			break
		}
	}
	// One write, so that concurrent records do not interleave.
	line := make([]byte, 0, len(prefix)+len(b))
	line = append(append(line, prefix...), b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}
