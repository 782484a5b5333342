package gpiohw

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestExportPWM: a channel not yet exported is exported (its number
// written to the chip's export, as the kernel expects) and its attributes
// handed to the group, writable; an exported one only gets the latter;
// a path that is no channel is refused.
func TestExportPWM(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		exported bool
	}{{"not yet exported", false}, {"already exported", true}} {
		t.Run(tc.name, func(t *testing.T) {
			chip := filepath.Join(t.TempDir(), "pwmchip0")
			ch := filepath.Join(chip, "pwm1")
			if err := os.MkdirAll(chip, 0o755); err != nil {
				t.Fatal(err)
			}
			// The kernel's side: writing N to export creates pwmN with
			// its attributes, root's and 0644.
			kernel := func() {
				os.MkdirAll(ch, 0o755)
				for _, a := range pwmAttributes {
					os.WriteFile(filepath.Join(ch, a), []byte("0"), 0o644)
				}
			}
			if tc.exported {
				kernel()
			} else {
				os.WriteFile(filepath.Join(chip, "export"), nil, 0o600)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := 0; i < 500; i++ {
						if b, _ := os.ReadFile(filepath.Join(chip, "export")); string(b) == "1" {
							kernel()
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
				t.Cleanup(func() { <-done })
			}
			if err := ExportPWM(ch, g.Name); err != nil {
				t.Fatal(err)
			}
			for _, a := range pwmAttributes {
				st, err := os.Stat(filepath.Join(ch, a))
				if err != nil || st.Mode().Perm()&0o020 == 0 {
					t.Errorf("%s: %v, mode %v: not group-writable", a, err, st.Mode())
				}
			}
		})
	}
	if err := ExportPWM("/sys/class/pwm/pwmchip0", g.Name); err == nil {
		t.Error("a chip accepted as a channel")
	}
}
