package daemon

import (
	"cmp"
	"context"
	"log/slog"
	"slices"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/orchestrator"
)

// Reloadable are the configuration keys palmd applies on SIGHUP
// (systemctl reload palmd) without a restart: none of them touches the
// camera, the light's wiring, the keys or the broker link. The
// diagnostics token is read again from its file even when the key is
// unchanged (the usual way to rotate it).
var Reloadable = []string{"log_level", "liveness.threshold", "liveness.max_attacks", "liveness.attack_window",
	"liveness.lockout", "diagnostics.token_file"}

// reloader applies a changed configuration file to a running palmd.
type reloader struct {
	path  string
	cur   *config.Config // what runs: reloaded keys updated, the others as started
	level *slog.LevelVar
	orch  *orchestrator.Orchestrator
	diag  *diag.Server // nil when the port is off
	log   *slog.Logger
	// fileThreshold is liveness.calibration_file's threshold as palmd
	// started (the built-in one without a file): what a configuration
	// that leaves liveness.threshold unset means.
	fileThreshold float64
}

// loop reloads on every hangup until ctx is done.
func (r *reloader) loop(ctx context.Context, hangups <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangups:
			notify(r.log, sd.SdNotifyReloading)
			r.reload()
			notify(r.log, sd.SdNotifyReady)
		}
	}
}

// reload reads the file again; a file with problems changes nothing.
func (r *reloader) reload() {
	if r.path == "" {
		r.log.Warn("SIGHUP: no configuration file to reload (palmd was started without one)")
		return
	}
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload refused: the configuration has problems; palmd goes on with the one it runs", "file", r.path, "problems", err.Error())
		return
	}
	if next.Liveness.Threshold == 0 { // set by calibration_file, read when palmd started
		next.Liveness.Threshold = cmp.Or(r.fileThreshold, r.cur.Liveness.Threshold)
	}
	var applied, restart []string
	for _, key := range config.Changed(r.cur, next) {
		if slices.Contains(Reloadable, key) {
			applied = append(applied, key)
		} else {
			restart = append(restart, key)
		}
	}
	// Apply every reloadable key, changed or not: cheap, and the token
	// file's contents may have changed under the same name. The log level
	// last, so that this reload is logged at the level it was asked at.
	r.orch.Retune(orchestrator.Tunables{LivenessThreshold: next.Liveness.Threshold, AttackLimit: orchestrator.AttackLimit{
		Max: next.Liveness.MaxAttacks, Window: next.Liveness.AttackWindow.D(), Lockout: next.Liveness.Lockout.D()}})
	tokenNote := "unchanged"
	switch token := diagToken(next, r.log); {
	case r.diag == nil && token != "":
		restart = append(restart, "diagnostics (the port opens when palmd starts)")
	case r.diag != nil && token == "":
		r.log.Warn("reload: no diagnostics token now; the port keeps the one it has (restart palmd to close the port)")
	case r.diag != nil:
		if err := r.diag.SetToken(token); err != nil {
			r.log.Error("reload: diagnostics token refused; the port keeps the one it has", "err", err)
		} else {
			tokenNote = "read again"
		}
	}
	r.cur.LogLevel, r.cur.Liveness.Threshold = next.LogLevel, next.Liveness.Threshold
	r.cur.Liveness.MaxAttacks, r.cur.Liveness.AttackWindow, r.cur.Liveness.Lockout = next.Liveness.MaxAttacks, next.Liveness.AttackWindow, next.Liveness.Lockout
	r.cur.Diagnostics.TokenFile = next.Diagnostics.TokenFile
	r.log.Info("configuration reloaded", "file", r.path, "applied", applied, "diagnostics_token", tokenNote)
	if len(restart) > 0 {
		r.log.Warn("configuration changes that need a restart to apply (systemctl restart palmd)", "keys", restart)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(next.LogLevel)); err == nil {
		r.level.Set(lv)
	}
}
