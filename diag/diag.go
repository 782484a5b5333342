// Package diag is the field technicians' diagnostics port: a small HTTP
// server, bound to loopback by default, where every endpoint but /healthz
// requires a bearer token (compared in constant time; repeated failures
// from an address are refused for a while and logged). It serves health,
// readiness, Prometheus metrics, a JSON status, a self-test and a small
// status page, and the liveness cues of recent presentations — numbers
// and states only, never a frame, ROI or template.
package diag

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/uplink"
	"github.com/palmd/palmd/version"
)

// Source is what the server reports on. The daemon fills it in; any field
// may be nil in tests.
type Source struct {
	DeviceID     string
	Orchestrator *orchestrator.Orchestrator
	Uplink       *uplink.Client
	Camera       sensor.Camera
	Illuminator  sensor.Illuminator
	// Alive reports when the main loop last ran (for /healthz).
	Alive func() time.Time
}

// Server is the diagnostics HTTP server.
type Server struct {
	src     Source
	log     *slog.Logger
	reg     *prometheus.Registry
	stages  *prometheus.HistogramVec
	mux     *http.ServeMux
	started time.Time

	mu       sync.Mutex
	token    [32]byte // SHA-256 of the token: fixed length for the comparison
	failures map[string]*failWindow
	rejected map[string]uint64 // requests refused before any handler, by reason
	handler  http.Handler
}

type failWindow struct {
	count int
	since time.Time
	until time.Time // refused until
}

// Rate limiting of bad tokens.
const (
	maxFailures = 5
	failWindowD = time.Minute
	lockoutD    = time.Minute
)

// DefaultListen is the diagnostics port's address unless configured:
// loopback only.
const DefaultListen = "127.0.0.1:9465"

// MinTokenLength is the shortest diagnostics token New accepts.
const MinTokenLength = 16

// New builds the server. token must be at least MinTokenLength bytes.
func New(src Source, token string, log *slog.Logger) (*Server, error) {
	token = strings.TrimSpace(token)
	if len(token) < MinTokenLength {
		return nil, fmt.Errorf("diag: the token must be at least %d characters", MinTokenLength)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{src: src, token: sha256.Sum256([]byte(token)), log: log, reg: prometheus.NewRegistry(),
		mux: http.NewServeMux(), started: time.Now(), failures: map[string]*failWindow{}, rejected: map[string]uint64{}}
	s.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "palmd_stage_seconds", Help: "Duration of pipeline stages (assess, liveness, extract, seal, result).",
		// A result may take up to the result deadline and more (10 s
		// and beyond under a slow matcher): buckets to 30 s.
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 3, 5, 7.5, 10, 15, 30},
	}, []string{"stage"})
	for _, stage := range orchestrator.Stages() {
		s.stages.WithLabelValues(stage)
	}
	s.reg.MustRegister(s.stages, &collector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.mux.HandleFunc("/healthz", s.healthz)
	s.mux.Handle("/readyz", s.auth(http.HandlerFunc(s.readyz)))
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	s.mux.Handle("/metrics", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if onlyGET(w, r) {
			metrics.ServeHTTP(w, r)
		}
	})))
	s.mux.Handle("/api/v1/status", s.auth(http.HandlerFunc(s.status)))
	s.mux.Handle("/api/v1/selftest", s.auth(http.HandlerFunc(s.selftest)))
	s.mux.Handle("/api/v1/camera-noise", s.auth(http.HandlerFunc(s.cameraNoise)))
	s.mux.Handle("/api/v1/liveness", s.auth(http.HandlerFunc(s.livenessLog)))
	s.mux.Handle("/ui.js", s.auth(http.HandlerFunc(s.script)))
	s.mux.Handle("/", s.auth(http.HandlerFunc(s.page)))
	// A browser holding the technician's Basic credentials must not be
	// made to POST from another site (a self-test on a hostile page's
	// behalf): Go's cross-origin protection refuses unsafe cross-origin
	// requests by Sec-Fetch-Site and Origin.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reject("cross_origin")
		fail(w, http.StatusForbidden, "cross-origin request refused")
	}))
	s.handler = s.canonical(cop.Handler(s.mux))
	return s, nil
}

// canonical answers paths that are not in canonical form ("/../",
// "//", "/./") with 400 before any routing: the mux would otherwise
// answer them with a redirect, unauthenticated.
func (s *Server) canonical(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p || r.URL.RawPath != "" && r.URL.RawPath != p {
			s.reject("path")
			fail(w, http.StatusBadRequest, "path not in canonical form")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) reject(reason string) {
	s.mu.Lock()
	s.rejected[reason]++
	s.mu.Unlock()
}

// SetToken replaces the token (palmd's reload); the old one is refused
// from the next request on. It must be at least MinTokenLength bytes.
func (s *Server) SetToken(token string) error {
	token = strings.TrimSpace(token)
	if len(token) < MinTokenLength {
		return fmt.Errorf("diag: the token must be at least %d characters", MinTokenLength)
	}
	sum := sha256.Sum256([]byte(token))
	s.mu.Lock()
	s.token = sum
	s.mu.Unlock()
	return nil
}

// ObserveStage feeds the stage latency histogram (orchestrator.Config.OnStage).
func (s *Server) ObserveStage(stage string, d time.Duration) {
	s.stages.WithLabelValues(stage).Observe(d.Seconds())
}

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve listens on addr until ctx is done.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("diag: %w", err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx is done.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("diag: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// auth checks the token, refusing an address after repeated wrong
// tokens. The token comes as "Bearer <token>" (palmctl, curl) or as the
// password of HTTP Basic credentials with any user name, which is what a
// technician's browser sends after its login prompt. A request without
// credentials is refused but not counted: it guesses nothing, and a
// browser always asks once without them.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		now := time.Now()
		s.mu.Lock()
		fw := s.failures[ip]
		locked := fw != nil && now.Before(fw.until)
		s.mu.Unlock()
		if locked {
			w.Header().Set("Retry-After", fmt.Sprint(int(time.Until(fw.until).Seconds())+1))
			fail(w, http.StatusTooManyRequests, "too many failed attempts; try again later")
			return
		}
		tok, presented := credential(r)
		if !presented {
			challenge(w, "a token is required (Authorization: Bearer, or Basic with the token as password)")
			return
		}
		sum := sha256.Sum256([]byte(tok))
		s.mu.Lock()
		want := s.token
		s.mu.Unlock()
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			s.mu.Lock()
			fw := s.failures[ip]
			if fw == nil || now.Sub(fw.since) > failWindowD {
				fw = &failWindow{since: now}
				s.failures[ip] = fw
			}
			fw.count++
			if fw.count >= maxFailures {
				fw.until = now.Add(lockoutD)
				s.log.Warn("diagnostics: address locked out after failed token attempts", "addr", ip, "failures", fw.count)
			} else {
				s.log.Info("diagnostics: request with a wrong token", "addr", ip, "path", r.URL.Path)
			}
			s.rejected["token"]++
			if len(s.failures) > 1024 { // bound memory under a scan
				for k, v := range s.failures {
					if now.After(v.until) && now.Sub(v.since) > failWindowD {
						delete(s.failures, k)
					}
				}
			}
			s.mu.Unlock()
			challenge(w, "wrong token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// credential returns the token a request presents, and whether it
// presents one at all.
func credential(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, true
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	tok, _ := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(tok), true
}

func challenge(w http.ResponseWriter, msg string) {
	// Both schemes: tools use Bearer; a browser shows its login prompt for
	// Basic (user name: anything, password: the token).
	w.Header().Add("WWW-Authenticate", `Bearer realm="palmd"`)
	w.Header().Add("WWW-Authenticate", `Basic realm="palmd diagnostics", charset="UTF-8"`)
	fail(w, http.StatusUnauthorized, msg)
}

func onlyGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "use GET")
		return false
	}
	return true
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	if s.src.Alive != nil {
		if last := s.src.Alive(); !last.IsZero() && time.Since(last) > 10*time.Second {
			fail(w, http.StatusServiceUnavailable, "main loop stalled")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	var problems []string
	if s.src.Uplink != nil && !s.src.Uplink.Connected() {
		problems = append(problems, "broker not connected")
	}
	if o := s.src.Orchestrator; o != nil && o.State() == orchestrator.StateStopped {
		problems = append(problems, "capture loop stopped")
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, s.snapshot())
}

// LivenessLog is the JSON of /api/v1/liveness: the last presentations the
// liveness detector measured (orchestrator.LivenessLog), oldest first, as
// raw cue values — numbers and cue names only. A terminal model's own
// liveness calibration is measured from a supervised pilot's (palmctl
// liveness-cues).
type LivenessLog struct {
	// Noise is the camera noise model the cues were measured against
	// (liveness.noise, or the built-in one); absent without a detector.
	Noise         *LivenessNoise         `json:"noise,omitempty"`
	Presentations []LivenessPresentation `json:"presentations"`
}

// LivenessNoise is a camera noise model in LivenessLog (palmd.yaml's
// liveness.noise).
type LivenessNoise struct {
	Read float64 `json:"read"`
	Shot float64 `json:"shot"`
	Corr float64 `json:"corr"`
}

// LivenessPresentation is one entry of LivenessLog.
type LivenessPresentation struct {
	Outcome          string                   `json:"outcome"`
	InViewToResultMS int64                    `json:"in_view_to_result_ms"`
	StillToResultMS  int64                    `json:"still_to_result_ms"`
	Cues             map[liveness.Cue]float64 `json:"cues"`
}

func (s *Server) livenessLog(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	out := LivenessLog{Presentations: []LivenessPresentation{}}
	if o := s.src.Orchestrator; o != nil {
		n := o.LivenessNoise()
		out.Noise = &LivenessNoise{Read: n.Read, Shot: n.Shot, Corr: n.Corr}
		for _, p := range o.LivenessLog() {
			// JSON has no NaN or infinity, and a calibration could not
			// use one: a cue that measured nothing finite is left out.
			maps.DeleteFunc(p.Raw, func(_ liveness.Cue, v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) })
			out.Presentations = append(out.Presentations, LivenessPresentation{Outcome: string(p.Outcome),
				InViewToResultMS: p.InViewToResult.Milliseconds(), StillToResultMS: p.StillToResult.Milliseconds(), Cues: p.Raw})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// SelfTest is the JSON of /api/v1/selftest (snake_case, units in the
// names).
type SelfTest struct {
	Passed   bool     `json:"passed"`
	Problems []string `json:"problems"`
	// LitMeanGrey and UnlitMeanGrey are the mean grey of frames with the
	// illuminator on and off, IlluminatorDeltaGrey their difference.
	LitMeanGrey          float64   `json:"lit_mean_grey"`
	UnlitMeanGrey        float64   `json:"unlit_mean_grey"`
	IlluminatorDeltaGrey float64   `json:"illuminator_delta_grey"`
	MeasuredFPS          float64   `json:"measured_fps"`
	Focus                float64   `json:"focus"`
	Frames               int       `json:"frames"`
	At                   time.Time `json:"at"`
	// BrokerRoundTripMS is absent when the terminal has no broker link.
	BrokerRoundTripMS *float64 `json:"broker_round_trip_ms,omitempty"`
	BrokerError       string   `json:"broker_error,omitempty"`
}

// bodilessPOST answers a request that is not a POST without a body, and
// reports whether it was one: the self-test and the noise measurement
// act on the terminal and take nothing.
func (s *Server) bodilessPOST(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, "use POST")
		return false
	}
	// No body at all: not by length, not chunked, not a form.
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		s.reject("body")
		fail(w, http.StatusRequestEntityTooLarge, "no body expected")
		return false
	}
	return true
}

func (s *Server) selftest(w http.ResponseWriter, r *http.Request) {
	if !s.bodilessPOST(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	res := SelfTest{Passed: true, Problems: []string{}, At: time.Now().UTC()}
	if o := s.src.Orchestrator; o != nil {
		st, err := o.SelfTest(ctx)
		if err != nil {
			fail(w, http.StatusServiceUnavailable, "self-test could not run: "+err.Error())
			return
		}
		res = SelfTest{Passed: st.Passed, Problems: append([]string{}, st.Problems...), LitMeanGrey: round(st.LitMean, 1),
			UnlitMeanGrey: round(st.UnlitMean, 1), IlluminatorDeltaGrey: round(st.Delta, 1), MeasuredFPS: round(st.FPS, 1),
			Focus: round(st.Focus, 3), Frames: st.Frames, At: st.At.UTC()}
	}
	if u := s.src.Uplink; u != nil {
		if d, err := u.RoundTrip(ctx); err != nil {
			res.BrokerError = err.Error()
			res.Passed = false
			res.Problems = append(res.Problems, "broker: "+err.Error())
		} else {
			ms := round(float64(d.Microseconds())/1000, 1)
			res.BrokerRoundTripMS = &ms
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// CameraNoise is the JSON of /api/v1/camera-noise: the camera's temporal
// noise as liveness.NoiseModel describes it, measured between
// presentations on whatever holds still in view (a grey card over the
// window, or the empty box), and what it was measured on.
type CameraNoise struct {
	Passed bool `json:"passed"`
	// Problem says why no model was fitted.
	Problem string `json:"problem,omitempty"`
	// ReadGrey is the read noise in grey levels at unity gain, Shot the
	// shot noise's variance per grey level at unity gain, CorrPX the
	// crosstalk's width: the values of palmd.yaml's liveness.noise.
	ReadGrey float64 `json:"read_grey"`
	Shot     float64 `json:"shot"`
	CorrPX   float64 `json:"corr_px"`
	Gain     float64 `json:"gain"`
	// ExposuresMS and IlluminatorLevels are the settings the pairs of
	// frames were taken at.
	ExposuresMS       []float64 `json:"exposures_ms"`
	IlluminatorLevels []int     `json:"illuminator_levels"`
	Pairs             int       `json:"pairs"`
	Tiles             int       `json:"tiles"`
	OutlierTiles      int       `json:"outlier_tiles"`
	MinGrey           float64   `json:"min_grey"`
	MaxGrey           float64   `json:"max_grey"`
	// ReadRelError and ShotRelError are the fit's relative standard
	// errors.
	ReadRelError float64   `json:"read_rel_error"`
	ShotRelError float64   `json:"shot_rel_error"`
	At           time.Time `json:"at"`
}

func (s *Server) cameraNoise(w http.ResponseWriter, r *http.Request) {
	if !s.bodilessPOST(w, r) {
		return
	}
	o := s.src.Orchestrator
	if o == nil {
		fail(w, http.StatusServiceUnavailable, "no camera on this server")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	nr, err := o.MeasureNoise(ctx)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "noise measurement could not run: "+err.Error())
		return
	}
	f := nr.Fit
	res := CameraNoise{Passed: nr.Passed(), Problem: nr.Problem, ReadGrey: round(f.Model.Read, 4), Shot: round(f.Model.Shot, 6),
		CorrPX: round(f.Model.Corr, 3), Gain: f.Gain, ExposuresMS: []float64{}, IlluminatorLevels: append([]int{}, nr.Levels...),
		Pairs: f.Pairs, Tiles: f.Tiles, OutlierTiles: f.Outliers, MinGrey: round(f.MinGrey, 1), MaxGrey: round(f.MaxGrey, 1),
		ReadRelError: round(f.ReadRelError, 4), ShotRelError: round(f.ShotRelError, 4), At: nr.At.UTC()}
	for _, e := range nr.Exposures {
		res.ExposuresMS = append(res.ExposuresMS, round(float64(e.Microseconds())/1000, 3))
	}
	if !res.Passed {
		// A failed fit's numbers are not a model.
		res.ReadGrey, res.Shot, res.CorrPX = 0, 0, 0
	}
	writeJSON(w, http.StatusOK, res)
}

// The page and its script are embedded: the daemon reads no file to serve
// them, and the script comes from the same origin, so the page's CSP can
// forbid inline script.
//
//go:embed ui/page.html
var pageHTML string

//go:embed ui/ui.js
var pageJS []byte

var pageTmpl = htmltemplate.Must(htmltemplate.New("page").Parse(pageHTML))

// pageCSP lets the page load its own script and fetch its own JSON, and
// nothing else: no inline script, no other origin, no framing.
const pageCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		fail(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if !onlyGET(w, r) {
		return
	}
	pageHeaders(w, "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, s.snapshot())
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	pageHeaders(w, "text/javascript; charset=utf-8")
	_, _ = w.Write(pageJS)
}

func pageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// collector exports the counters of the other packages at scrape time.
// Every label value that can occur is exported from the start (at zero),
// so that rates and sums over them are defined before the first event.
type collector struct{ s *Server }

// rejectReasons are the reasons a diagnostics request is refused before
// any handler (Server.reject).
var rejectReasons = []string{"token", "path", "body", "cross_origin"}

var (
	descBuild     = prometheus.NewDesc("palmd_build_info", "palmd's version and the Go version that built it (always 1).", []string{"version", "go_version"}, nil)
	descFrames    = prometheus.NewDesc("palmd_frames_total", "Frames delivered by the camera.", nil, nil)
	descReopens   = prometheus.NewDesc("palmd_camera_reopens_total", "Times the camera was closed and opened again after it stopped delivering.", nil, nil)
	descOutcomes  = prometheus.NewDesc("palmd_presentations_total", "Presentations by outcome (the outcomes are exclusive).", []string{"outcome"}, nil)
	descGates     = prometheus.NewDesc("palmd_quality_gate_failures_total", "Frames refused by each quality gate.", []string{"gate"}, nil)
	descIllumOn   = prometheus.NewDesc("palmd_illuminator_on_seconds_total", "Cumulative illuminator on-time.", nil, nil)
	descDuty      = prometheus.NewDesc("palmd_illuminator_duty_ratio", "Share of the eye-safety duty window the illuminator has been on (0..1).", nil, nil)
	descCutoffs   = prometheus.NewDesc("palmd_illuminator_cutoffs_total", "Safety cut-offs of the illuminator.", nil, nil)
	descConnected = prometheus.NewDesc("palmd_mqtt_connected", "1 when the broker link is up.", nil, nil)
	descReconnect = prometheus.NewDesc("palmd_mqtt_reconnects_total", "Broker reconnections.", nil, nil)
	descRefused   = prometheus.NewDesc("palmd_mqtt_packets_refused_total", "Broker connections dropped for an oversized incoming packet (refused unread).", nil, nil)
	descHung      = prometheus.NewDesc("palmd_mqtt_hung_links_total", "Broker connections dropped because the broker stopped answering.", nil, nil)
	descOutbox    = prometheus.NewDesc("palmd_outbox_captures", "Captures in the outbox, not yet answered.", nil, nil)
	descOutboxB   = prometheus.NewDesc("palmd_outbox_bytes", "Bytes of sealed captures in the outbox.", nil, nil)
	descSubmitted = prometheus.NewDesc("palmd_captures_submitted_total", "Sealed captures put in the outbox.", nil, nil)
	descFull      = prometheus.NewDesc("palmd_captures_outbox_full_total", "Sealed captures refused because the outbox was full (not submitted).", nil, nil)
	descDelivered = prometheus.NewDesc("palmd_captures_delivered_total", "Captures acknowledged by the broker (first acknowledgement of each).", nil, nil)
	descRepub     = prometheus.NewDesc("palmd_capture_republishes_total", "Publications of a capture beyond its first.", nil, nil)
	descEnded     = prometheus.NewDesc("palmd_captures_ended_total", "Submitted captures by how they ended (exclusive; submitted minus their sum are in flight).", []string{"fate"}, nil)
	descDropped   = prometheus.NewDesc("palmd_results_dropped_total", "Results dropped, by reason.", []string{"reason"}, nil)
	descCommands  = prometheus.NewDesc("palmd_commands_accepted_total", "Signed commands accepted.", nil, nil)
	descCmdDrop   = prometheus.NewDesc("palmd_commands_dropped_total", "Commands dropped, by reason.", []string{"reason"}, nil)
	descDiagRej   = prometheus.NewDesc("palmd_diag_requests_rejected_total", "Diagnostics requests refused, by reason (token, path, body, cross_origin).", []string{"reason"}, nil)
	descAttacks   = prometheus.NewDesc("palmd_attacks_refused_total", "Presentation attacks refused, by the liveness cue that refused them.", []string{"cue"}, nil)
	descLocked    = prometheus.NewDesc("palmd_attack_lockout", "1 while repeated attacks lock the terminal.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuild, descFrames, descReopens, descOutcomes, descGates, descIllumOn, descDuty, descCutoffs,
		descConnected, descReconnect, descRefused, descHung, descOutbox, descOutboxB, descSubmitted, descFull, descDelivered, descRepub,
		descEnded, descDropped, descCommands, descCmdDrop, descDiagRej, descAttacks, descLocked} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	src := c.s.src
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descBuild, 1, version.Version, runtime.Version())
	c.s.mu.Lock()
	for _, reason := range rejectReasons {
		counter(descDiagRej, float64(c.s.rejected[reason]), reason)
	}
	c.s.mu.Unlock()
	if cam, ok := src.Camera.(reopener); ok {
		counter(descReopens, float64(cam.Reopens()))
	} else if src.Camera != nil {
		counter(descReopens, 0)
	}
	if o := src.Orchestrator; o != nil {
		counter(descFrames, float64(o.Frames()))
		outcomes := o.Outcomes()
		for _, k := range orchestrator.AllOutcomes() {
			counter(descOutcomes, float64(outcomes[k]), string(k))
		}
		fails := o.GateFailures()
		for _, g := range imaging.FailureGates() {
			counter(descGates, float64(fails[g.String()]), g.String())
		}
		refused := o.Attacks()
		for _, cue := range liveness.AllCues() {
			counter(descAttacks, float64(refused[cue]), string(cue))
		}
		gauge(descLocked, boolean(!o.LockedUntil().IsZero()))
	}
	if il := src.Illuminator; il != nil {
		st := il.State()
		counter(descIllumOn, st.TotalOn.Seconds())
		gauge(descDuty, st.Duty)
		counter(descCutoffs, float64(st.Cutoffs))
	}
	if u := src.Uplink; u != nil {
		st := u.Stats()
		gauge(descConnected, boolean(st.Connected))
		counter(descReconnect, float64(st.Reconnects))
		counter(descRefused, float64(st.PacketsRefused))
		counter(descHung, float64(st.HungLinks))
		gauge(descOutbox, float64(st.OutboxDepth))
		gauge(descOutboxB, float64(st.OutboxBytes))
		counter(descSubmitted, float64(st.Submitted))
		counter(descFull, float64(st.OutboxFull))
		counter(descDelivered, float64(st.Delivered))
		counter(descRepub, float64(st.Republished))
		for fate, v := range map[string]uint64{"answered": st.Results, "expired": st.Expired, "no_result": st.NoResult} {
			counter(descEnded, float64(v), fate)
		}
		for _, reason := range uplink.ResultDropReasons() {
			counter(descDropped, float64(st.ResultsDropped[reason]), reason)
		}
		counter(descCommands, float64(st.Commands))
		for _, reason := range uplink.CommandDropReasons() {
			counter(descCmdDrop, float64(st.CommandsDropped[reason]), reason)
		}
	}
}
