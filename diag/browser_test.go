package diag

import (
	"context"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/sensor/sim"
)

// chromium finds Debian's chromium (make bootstrap installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run make bootstrap (Debian package chromium)")
	return ""
}

// presenting runs a simulated terminal where a hand is presented, then
// the scene stays empty for a minute; the in-process uplink never
// answers, so a presentation ends as no_result (or attack).
func presenting(t *testing.T) (Source, <-chan orchestrator.Presentation) {
	t.Helper()
	scen := &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 10},
		{Kind: sim.StepPresent, Identity: 7, Approach: 8, Hold: 90, Withdraw: 8}, {Kind: sim.StepEmpty, Hold: 1800}}}
	done := make(chan orchestrator.Presentation, 4)
	src := terminal(t, "term-b", sim.Config{Scenario: scen, Realtime: true, FPS: 30, Seed: 1}, func(p orchestrator.Presentation) {
		select {
		case done <- p:
		default:
		}
	})
	return src, done
}

// TestTechnicianPageInBrowser opens the technician page in headless
// chromium as a technician would — the browser's login prompt answered
// with the token — and checks what the page shows after a presentation
// and after pressing the self-test and the camera noise buttons.
func TestTechnicianPageInBrowser(t *testing.T) {
	exe := chromium(t)
	src, presented := presenting(t)
	ts := server(t, src)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)

	// The login prompt: every authentication challenge is answered with
	// the token as password (any user name), as a technician types it;
	// other requests go on untouched. (Subscribing starts the browser.)
	var prompts atomic.Int32
	authEvents := chromedp.Events(bctx, fetch.AuthRequired)
	pausedEvents := chromedp.Events(bctx, fetch.RequestPaused)
	go func() {
		for e, err := range authEvents {
			if err != nil {
				return
			}
			prompts.Add(1)
			_, _ = chromedp.Call(bctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: e.RequestID,
				AuthChallengeResponse: &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: "technician", Password: token}})
		}
	}()
	go func() {
		for e, err := range pausedEvents {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(bctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
		}
	}()
	handleAuth := true
	if _, err := chromedp.Call(bctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handleAuth}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("recent"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}

	// The page must go live on its own (polling), without a reload.
	if err := chromedp.Do(ctx, waitText("#link", "live")); err != nil {
		t.Fatalf("page never went live: %v", err)
	}
	select {
	case p := <-presented:
		t.Logf("presented: %s, quality %d, in view → result %v", p.Outcome, p.Quality, p.InViewToResult)
	case <-ctx.Done():
		t.Fatal("no presentation within the time allowed")
	}
	if err := chromedp.Do(ctx, waitText("#recent-rows tr.presentation td:nth-child(2)", "")); err != nil {
		t.Fatalf("the presentation never showed: %v", err)
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return v
	}
	link, state, fps, illum := text("#link"), text("#state"), text("#fps"), text("#illuminator")
	outcome, quality, row := text("#recent-rows tr.presentation td:nth-child(2)"), text("#recent-rows tr.presentation td:nth-child(3)"), text("#recent-rows tr.presentation")
	dots, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.querySelectorAll('#chart circle.quality').length"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page: %s | state %s | %s | %s | row %q | %d chart points | %d login prompts", link, state, fps, illum, row, dots, prompts.Load())
	if state == "" || !strings.Contains(fps, "fps") || !strings.Contains(illum, "duty") {
		t.Errorf("overview incomplete: state %q, fps %q, illuminator %q", state, fps, illum)
	}
	if outcome == "" || !strings.HasSuffix(quality, "%") || !strings.Contains(row, "ms") {
		t.Errorf("the presentation's row lacks outcome, quality or latency: %q", row)
	}
	if dots < 1 {
		t.Error("the chart shows no presentation")
	}
	if prompts.Load() < 1 {
		t.Error("the page was served without asking for the token")
	}

	// Self-test: press the button, read the verdict.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("selftest")), waitText("#selftest-result", "passed")); err != nil {
		t.Fatalf("self-test button: %v (shows %q)", err, text("#selftest-result"))
	}
	verdict := text("#selftest-result")
	t.Logf("self-test: %s", verdict)
	if !strings.Contains(verdict, "grey levels") || !strings.Contains(verdict, "fps") {
		t.Errorf("self-test verdict lacks its figures: %q", verdict)
	}

	// Camera noise, on the empty box: the line for palmd.yaml.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("noise")), waitText("#noise-result", "measured")); err != nil {
		t.Fatalf("camera noise button: %v (shows %q)", err, text("#noise-result"))
	}
	noise := text("#noise-result")
	t.Logf("camera noise: %s", noise)
	if !strings.Contains(noise, "liveness: {noise: {read: 0.3") || !strings.Contains(noise, "shot: 0.002") {
		t.Errorf("camera noise lacks the simulated camera's figures: %q", noise)
	}
}

// waitText waits until the element sel exists and its text contains want
// (any non-empty text when want is "").
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	js := `(() => { const e = document.querySelector(` + quote(sel) + `); return !!e && e.textContent.length > 0 && e.textContent.includes(` + quote(want) + `); })()`
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			ok, err := chromedp.Evaluate[bool](js)(ctx, t)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
