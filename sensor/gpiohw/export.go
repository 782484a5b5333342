package gpiohw

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// pwmAttributes are the channel attributes palmd writes.
var pwmAttributes = []string{"period", "duty_cycle", "enable"}

var pwmChannel = regexp.MustCompile(`^pwm(\d+)$`)

// PWMGroup is the group the shipped udev rule and ExportPWM give the PWM
// channel to: palmd's user is in it (as for the GPIO character devices).
const PWMGroup = "gpio"

// ExportPWMTimeout bounds the wait for the kernel to create an exported
// channel's attributes.
const ExportPWMTimeout = 2 * time.Second

// ExportPWM makes the sysfs PWM channel dir (/sys/class/pwm/pwmchipN/pwmM)
// usable by the group named group: it exports the channel when it is not
// yet (writing M to pwmchipN/export), then gives the group write access to
// its attributes. It needs root; systemd runs it before palmd starts
// ("ExecStartPre=+palmd -export-pwm"), outside palmd's sandbox, since
// exporting is a kernel control palmd's unprivileged user does not have.
// An exported channel's attributes are also handed to the group by the
// shipped udev rule; doing it here as well closes the race with udev.
func ExportPWM(dir, group string) error {
	m := pwmChannel.FindStringSubmatch(filepath.Base(dir))
	if m == nil {
		return fmt.Errorf("gpiohw: %s is not a PWM channel (…/pwmchipN/pwmM)", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "duty_cycle")); errors.Is(err, os.ErrNotExist) {
		export := filepath.Join(filepath.Dir(dir), "export")
		if err := os.WriteFile(export, []byte(m[1]), 0); err != nil {
			return fmt.Errorf("gpiohw: exporting PWM channel %s: %w", dir, err)
		}
		deadline := time.Now().Add(ExportPWMTimeout)
		for {
			if _, err := os.Stat(filepath.Join(dir, "duty_cycle")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("gpiohw: PWM channel %s did not appear within %v of its export", dir, ExportPWMTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("gpiohw: group %s: %w", group, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	var errs []error
	for _, attr := range pwmAttributes {
		p := filepath.Join(dir, attr)
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("gpiohw: %w", err))
			continue
		}
		if err := os.Chown(p, -1, gid); err != nil {
			errs = append(errs, fmt.Errorf("gpiohw: %w", err))
		}
		if err := os.Chmod(p, st.Mode().Perm()|0o020); err != nil {
			errs = append(errs, fmt.Errorf("gpiohw: %w", err))
		}
	}
	return errors.Join(errs...)
}
