package diag

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
)

const token = "0123456789abcdef-technician"

// running starts an orchestrator on an idle simulated terminal.
func running(t *testing.T) Source {
	t.Helper()
	return terminal(t, "term-d", sim.Config{Scenario: &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 10}}}, Realtime: true, FPS: 60}, nil)
}

// terminal runs an orchestrator on a simulated terminal with an
// in-process uplink that never answers; onOutcome, when set, gets every
// presentation.
func terminal(t *testing.T, id string, cfg sim.Config, onOutcome func(orchestrator.Presentation)) Source {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	o, err := orchestrator.New(s.Device(), &protocol.Sealer{DeviceID: id, DeviceKey: priv, Matcher: mk.Public()}, &orchestratortest.Uplink{}, orchestrator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if onOutcome != nil {
		o.OnOutcome(onOutcome)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = o.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = s.Device().Close() })
	return Source{DeviceID: id, Orchestrator: o, Camera: s.Camera, Illuminator: s.Illuminator}
}

func server(t *testing.T, src Source) *httptest.Server {
	t.Helper()
	s, err := New(src, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.ObserveStage("extract", 9*time.Millisecond)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, ts *httptest.Server, method, path, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuthentication(t *testing.T) {
	ts := server(t, Source{DeviceID: "term-d"})
	if code, _ := do(t, ts, "GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz without token: %d", code)
	}
	for _, p := range []string{"/", "/readyz", "/metrics", "/api/v1/status", "/api/v1/liveness"} {
		code, body := do(t, ts, "GET", p, "")
		if code != 401 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s without token: %d %s", p, code, body)
		}
		if code, _ := do(t, ts, "GET", p, token); code != 200 {
			t.Errorf("%s with token: %d", p, code)
		}
	}
	if _, err := New(Source{}, "short", nil); err == nil {
		t.Error("short token accepted")
	}
}

// TestBrowserLogin: a browser gets a Basic challenge, and the token as the
// Basic password opens every page; asking without credentials is not a
// failed attempt, a wrong Basic password is.
func TestBrowserLogin(t *testing.T) {
	ts := server(t, Source{DeviceID: "term-b"})
	basic := func(user, pass string) (int, http.Header) {
		req, _ := http.NewRequest("GET", ts.URL+"/", nil)
		if user != "" || pass != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := 0; i < 2*maxFailures; i++ {
		code, h := basic("", "")
		if code != 401 || !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), "\n"), `Basic realm="palmd diagnostics"`) {
			t.Fatalf("no credentials, request %d: %d %v", i, code, h.Values("WWW-Authenticate"))
		}
	}
	if code, _ := basic("technician", token); code != 200 {
		t.Fatalf("token as Basic password after %d unauthenticated requests: %d", 2*maxFailures, code)
	}
	for i := 0; i < maxFailures; i++ {
		if code, _ := basic("technician", "wrong-token-000000"); code != 401 {
			t.Fatalf("wrong Basic password %d: %d", i, code)
		}
	}
	if code, _ := basic("technician", token); code != 429 {
		t.Fatalf("after %d wrong Basic passwords: %d, want 429", maxFailures, code)
	}
}

func TestWrongTokensAreRateLimited(t *testing.T) {
	ts := server(t, Source{})
	for i := 0; i < maxFailures; i++ {
		if code, _ := do(t, ts, "GET", "/api/v1/status", "wrong-token-000000"); code != 401 {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	code, body := do(t, ts, "GET", "/api/v1/status", token)
	if code != 429 || !strings.Contains(body, "too many") {
		t.Fatalf("after %d failures, the right token from the same address: %d %s", maxFailures, code, body)
	}
	if code, _ := do(t, ts, "GET", "/healthz", ""); code != 200 {
		t.Error("/healthz must stay open")
	}
}

func TestBadRequests(t *testing.T) {
	ts := server(t, Source{})
	cases := []struct {
		method, path string
		code         int
	}{
		{"POST", "/api/v1/status", 405},
		{"DELETE", "/metrics", 405},
		{"GET", "/api/v1/selftest", 405},
		{"GET", "/api/v1/camera-noise", 405},
		{"POST", "/api/v1/camera-noise", 503}, // no camera on this server
		{"GET", "/nope", 404},
		{"GET", "/api/v2/status", 404},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, body := do(t, ts, tc.method, tc.path, token)
			if code != tc.code || !strings.Contains(body, `"error"`) {
				t.Errorf("%d %s, want %d with a JSON error", code, body, tc.code)
			}
		})
	}
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/selftest", strings.NewReader(strings.Repeat("x", 4096)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("selftest with a body: %d", resp.StatusCode)
	}
}

func TestStatusMetricsAndSelfTest(t *testing.T) {
	ts := server(t, running(t))
	time.Sleep(200 * time.Millisecond)
	code, body := do(t, ts, "GET", "/api/v1/status", token)
	var st Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Device != "term-d" || st.Camera == nil || st.Camera.FramesTotal == 0 ||
		st.Camera.Format == "" || st.Illuminator == nil || st.Illuminator.MaxDutyRatio != 0.5 {
		t.Fatalf("status %d %s", code, body)
	}
	if len(body) > 8<<10 {
		t.Errorf("status is %d bytes: numbers only, please", len(body))
	}
	// Snake case with units, no Go field names, no nanosecond integers.
	for _, bad := range []string{`"Camera"`, `"TotalOn"`, `"Level"`, `"FPS"`} {
		if strings.Contains(body, bad) {
			t.Errorf("status has the Go name %s: %s", bad, body)
		}
	}
	if st.AttacksRefused == nil || st.LockedUntil != nil {
		t.Errorf("status without the attack counters, or locked: %s", body)
	}
	code, body = do(t, ts, "GET", "/metrics", token)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	// The attack counters exist for every cue before the first attack.
	for _, want := range []string{"palmd_frames_total", "palmd_illuminator_on_seconds_total", `palmd_stage_seconds_bucket{stage="extract"`,
		`palmd_attacks_refused_total{cue="surface_detail"} 0`, `palmd_attacks_refused_total{cue="no_nir_reflectance"} 0`, "palmd_attack_lockout 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	code, body = do(t, ts, "POST", "/api/v1/selftest", token)
	var res SelfTest
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("selftest %d %s", code, body)
	}
	t.Logf("self-test: lit %.1f unlit %.1f delta %.1f fps %.1f focus %.3f", res.LitMeanGrey, res.UnlitMeanGrey, res.IlluminatorDeltaGrey, res.MeasuredFPS, res.Focus)
	if !res.Passed || res.IlluminatorDeltaGrey < 3 || res.MeasuredFPS < 10 {
		t.Errorf("self-test on a healthy simulated terminal: %+v", res)
	}
	code, body = do(t, ts, "GET", "/", token)
	if code != 200 || !strings.Contains(body, "<h1>palmd term-d</h1>") {
		t.Errorf("page %d %s", code, body)
	}
	if code, body := do(t, ts, "GET", "/ui.js", token); code != 200 || !strings.Contains(body, "/api/v1/status") {
		t.Errorf("script %d", code)
	}
}

// TestCameraNoise: the noise measurement runs between presentations on
// the simulated terminal's empty box and answers with the simulated
// camera's read and shot noise, in palmd.yaml's units, numbers only.
func TestCameraNoise(t *testing.T) {
	ts := server(t, running(t))
	code, body := do(t, ts, "POST", "/api/v1/camera-noise", token)
	var res CameraNoise
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("camera-noise %d %s", code, body)
	}
	t.Log(body)
	want := liveness.DefaultNoise
	if !res.Passed || math.Abs(res.ReadGrey-want.Read) > 0.05*want.Read || math.Abs(res.Shot-want.Shot) > 0.05*want.Shot ||
		res.CorrPX <= 0 || len(res.ExposuresMS) != 5 || res.Tiles < liveness.MinNoiseTiles {
		t.Errorf("camera noise of the simulated terminal: %+v", res)
	}
	for _, bad := range []string{`"Fit"`, `"Model"`, `"Read"`} {
		if strings.Contains(body, bad) {
			t.Errorf("camera-noise has the Go name %s: %s", bad, body)
		}
	}
}

// TestHostileRequests: paths outside canonical form get a 400 before any
// routing (no unauthenticated redirect), the self-test takes no body in
// any encoding, a cross-origin POST with a browser's Basic credentials is
// refused, and each refusal is counted by reason.
func TestHostileRequests(t *testing.T) {
	ts := server(t, Source{DeviceID: "term-d"})
	noRedirect := *ts.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
		header             map[string]string
		basic              bool
		chunked            bool
		want               int
	}{
		{name: "dot-dot", method: "GET", path: "/../api/v1/status", want: 400},
		{name: "double slash", method: "GET", path: "//metrics", want: 400},
		{name: "dot segment", method: "GET", path: "/api/./v1/status", want: 400},
		{name: "encoded dot-dot", method: "GET", path: "/api/v1/%2e%2e/status", want: 400},
		{name: "chunked self-test body", method: "POST", path: "/api/v1/selftest", body: strings.NewReader("x"), chunked: true, want: 413},
		{name: "chunked noise measurement body", method: "POST", path: "/api/v1/camera-noise", body: strings.NewReader("x"), chunked: true, want: 413},
		{name: "form self-test body", method: "POST", path: "/api/v1/selftest", body: strings.NewReader("a=b"),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 413},
		{name: "cross-origin form post", method: "POST", path: "/api/v1/selftest", basic: true,
			header: map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, want: 403},
		{name: "cross-origin by Origin alone", method: "POST", path: "/api/v1/selftest", basic: true,
			header: map[string]string{"Origin": "http://evil.example"}, want: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL, tc.body)
			req.URL.Opaque = "//" + req.URL.Host + tc.path // sent as written, not cleaned
			if tc.chunked {
				req.ContentLength = -1
				req.TransferEncoding = []string{"chunked"}
			}
			if tc.basic {
				req.SetBasicAuth("technician", token)
			} else {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
		})
	}
	_, metrics := do(t, ts, "GET", "/metrics", token)
	for _, reason := range []string{"path", "body", "cross_origin"} {
		if !strings.Contains(metrics, `palmd_diag_requests_rejected_total{reason="`+reason+`"}`) {
			t.Errorf("rejections for %s not counted", reason)
		}
	}
	// The technician's own browser, same origin, still runs the self-test
	// (no orchestrator here: it answers, it is not refused).
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/selftest", nil)
	req.SetBasicAuth("technician", token)
	req.Header.Set("Origin", ts.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("same-origin self-test: %d", resp.StatusCode)
	}
}

// FuzzCredentials: any Authorization header and Basic pair; no panic, and
// a request is let through exactly when it presents the token.
func FuzzCredentials(f *testing.F) {
	f.Add("Bearer "+token, "", "")
	f.Add("Basic dGVjaDo=", "tech", token)
	f.Add("Bearer", "", "")
	s, err := New(Source{DeviceID: "term-d"}, token, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header, user, pass string) {
		s.mu.Lock()
		clear(s.failures) // the lockout is tested elsewhere
		s.mu.Unlock()
		req := httptest.NewRequest("GET", "/readyz", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		if user != "" || pass != "" {
			req.SetBasicAuth(user, pass)
		}
		tok, _ := credential(req)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if through := w.Code != http.StatusUnauthorized; through != (tok == token) {
			t.Fatalf("status %d for credential %q", w.Code, tok)
		}
	})
}

// TestLivenessLog: /api/v1/liveness gives every presentation the detector
// measured as its raw cue values — what the detector decided on, numbers
// and cue names only — with the noise model they were measured against,
// and takes no other method.
func TestLivenessLog(t *testing.T) {
	src, presented := presenting(t)
	ts := server(t, src)
	var p orchestrator.Presentation
	select {
	case p = <-presented:
	case <-time.After(60 * time.Second):
		t.Fatal("no presentation within 60 s")
	}
	if len(p.Liveness.Raw) == 0 {
		t.Fatalf("presentation %s without liveness cues", p.Outcome)
	}
	code, body := do(t, ts, "GET", "/api/v1/liveness", token)
	var log LivenessLog
	if code != 200 || json.Unmarshal([]byte(body), &log) != nil {
		t.Fatalf("liveness log %d %s", code, body)
	}
	if len(log.Presentations) != 1 {
		t.Fatalf("%d presentations in the log, want 1: %s", len(log.Presentations), body)
	}
	got := log.Presentations[0]
	if got.Outcome != string(p.Outcome) || got.StillToResultMS != p.StillToResult.Milliseconds() || !maps.Equal(got.Cues, p.Liveness.Raw) {
		t.Errorf("logged %+v, want %s with cues %v", got, p.Outcome, p.Liveness.Raw)
	}
	// The cues were measured against the built-in noise model (none
	// configured): the log says so, for the calibration made from it.
	if n := liveness.DefaultNoise; log.Noise == nil || *log.Noise != (LivenessNoise{Read: n.Read, Shot: n.Shot, Corr: n.Corr}) {
		t.Errorf("noise model %+v in the log, want the built-in %+v", log.Noise, n)
	}
	if code, _ := do(t, ts, "POST", "/api/v1/liveness", token); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", code)
	}
}
