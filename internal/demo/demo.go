// Package demo runs the product end to end on one machine, as `make demo`
// does: a Mosquitto broker, the palm-matcher process and the palmd process
// on the simulated sensor, with a scripted scenario in which a handful of
// synthetic people enrol (three samples each, each session opened by a
// signed command from "the cloud", played here by the demo) and then
// present again, along with people who never enrolled. It prints who
// presented, the decision, the score and the time from the hand being still
// to the result, then a summary, and fails if any decision is wrong.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/palmd/palmd/template"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/internal/mosquitto"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template/templatetest"
)

// Options configure a demo run.
type Options struct {
	// BinDir holds palmd and palm-matcher.
	BinDir string
	// People enrol (3 samples each) and present again; Strangers never
	// enrol. Defaults 4 and 2.
	People, Strangers int
	// Matchers is how many palm-matcher instances share the load (through
	// the shared subscription and one encrypted gallery file); 2.
	Matchers int
	// Pad is how many stand-in entries fill the gallery before anyone
	// enrols, so that enrolled people are found, and strangers refused,
	// among a city-sized crowd; DefaultPad. Negative: none.
	Pad int
	Out io.Writer
	// Verbose receives the processes' logs.
	Verbose io.Writer
}

const device = "term-demo"

// attackScene prefixes the scene of an attack presentation.
const attackScene = "print-of-"

type person struct {
	name     string
	seed     uint64
	session  [16]byte
	enrolled string // subject id the matcher gave
}

type row struct {
	scene, expected, got, subject, attack string
	score                                 float64
	ms, inView                            int64
	ok                                    bool
}

// DefaultPad is the demo gallery's stand-in entries.
const DefaultPad = 100_000

// Run runs the demo.
func Run(ctx context.Context, o Options) error {
	if o.Pad == 0 {
		o.Pad = DefaultPad
	}
	if o.People == 0 {
		o.People = 4
	}
	if o.Strangers == 0 {
		o.Strangers = 2
	}
	if o.Matchers == 0 {
		o.Matchers = 2
	}
	if o.Verbose == nil {
		o.Verbose = io.Discard
	}
	dir, err := os.MkdirTemp("", "palmd-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	people := cast(o.People + o.Strangers)
	enrolling, strangers := people[:o.People], people[o.People:]

	// Keys, as an operator would provision them.
	cmdKey, resultKeyFile, err := provision(dir)
	if err != nil {
		return err
	}
	if err := padGallery(dir, o.Pad); err != nil {
		return err
	}
	steps := scenario(enrolling, strangers)
	scenJSON, _ := json.Marshal(sim.Scenario{Steps: steps})
	scenPath := filepath.Join(dir, "scenario.json")
	if err := os.WriteFile(scenPath, scenJSON, 0o600); err != nil {
		return err
	}

	broker, err := mosquitto.New(dir, protocol.MaxPacket, "allow_anonymous true\n", o.Verbose)
	if err != nil {
		return err
	}
	defer broker.Stop()
	if err := broker.Start(); err != nil {
		return err
	}
	brokerURL := fmt.Sprintf("tcp://127.0.0.1:%d", broker.Port())
	matcherLogs, stopMatchers, err := startMatchers(ctx, o, dir, brokerURL, resultKeyFile)
	defer stopMatchers()
	if err != nil {
		return err
	}
	cfgPath, err := writeConfig(dir, scenPath, brokerURL)
	if err != nil {
		return err
	}
	c, err := dialCloud(brokerURL, cmdKey)
	if err != nil {
		return err
	}
	defer c.close()

	fmt.Fprintf(o.Out, "palmd demo: %d people enrol (3 samples each), then they and %d strangers present a month later.\n", len(enrolling), len(strangers))
	fmt.Fprintf(o.Out, "broker %s, %d palm-matcher instances sharing the load, palmd on the simulated sensor (%d scenario frames)\n",
		brokerURL, o.Matchers, (&sim.Scenario{Steps: steps}).Len())
	fmt.Fprintf(o.Out, "the gallery holds %d stand-in people before anyone enrols (searched by sketch pre-selection, then in full)\n\n", max(0, o.Pad))
	fmt.Fprintf(o.Out, "liveness is on: every presentation is checked for a living hand before anything is extracted or sealed\n\n")
	fmt.Fprintf(o.Out, "%-16s %-9s %-9s %-7s %14s %13s  %s\n", "who", "expected", "decision", "score", "in view→result", "still→result", "")
	rows, err := runPalmd(ctx, o, cfgPath, c, people, enrolling)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // the matchers' last log lines
	var per []string
	answered := 0
	for i, l := range matcherLogs {
		n := l.count()
		answered += n
		per = append(per, fmt.Sprintf("palm-matcher-%d %d", i+1, n))
	}
	fmt.Fprintf(o.Out, "\ncaptures answered: %s\n", strings.Join(per, ", "))
	err = summarise(o.Out, rows, enrolling, o.People*3+o.People+o.Strangers+1)
	// The refused attack sent nothing: one answer fewer than presentations.
	if err == nil && answered != len(rows)-1 {
		err = fmt.Errorf("demo: %d answers for %d presentations: a capture was answered twice or not at all", answered, len(rows))
	}
	return err
}

// cast names n people, each with a simulated identity and an enrolment
// session id.
func cast(n int) []*person {
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	var people []*person
	for i := 0; i < n; i++ {
		p := &person{name: names[i%len(names)] + strconv.Itoa(i/len(names)+1), seed: uint64(100 + 17*i)}
		p.name = strings.TrimSuffix(p.name, "1")
		_, _ = rand.Read(p.session[:])
		people = append(people, p)
	}
	return people
}

// scenario: everyone enrols, then everyone (and the strangers) presents a
// month later.
func scenario(enrolling, strangers []*person) []sim.Step {
	var steps []sim.Step
	gap := sim.Step{Kind: sim.StepEmpty, Hold: 30}
	steps = append(steps, sim.Step{Kind: sim.StepEmpty, Hold: 60})
	for _, p := range enrolling {
		for k := 0; k < 3; k++ {
			steps = append(steps, sim.Step{Kind: sim.StepPresent, Identity: p.seed, Session: 0, Sample: k, Approach: 8, Hold: 24, Withdraw: 8,
				Label: fmt.Sprintf("%s/enrol%d", p.name, k+1)}, gap)
		}
		steps = append(steps, sim.Step{Kind: sim.StepEmpty, Hold: 40})
	}
	for _, p := range append(slices.Clone(enrolling), strangers...) {
		steps = append(steps, sim.Step{Kind: sim.StepPresent, Identity: p.seed, Session: 1, Sample: 4, Approach: 8, Hold: 24, Withdraw: 8, Label: p.name}, gap)
	}
	// An attacker holds up a print of the first enrolled person's palm.
	steps = append(steps, sim.Step{Kind: sim.StepPhoto, Identity: enrolling[0].seed, Session: 1, Sample: 7, Approach: 8, Hold: 24, Withdraw: 8,
		Label: attackScene + enrolling[0].name}, gap)
	return steps
}

// startMatchers starts o.Matchers palm-matcher processes sharing the
// gallery; stop ends them (call it even on error).
func startMatchers(ctx context.Context, o Options, dir, brokerURL, resultKeyFile string) (logs []*countingWriter, stop func(), err error) {
	var procs []*proc
	stop = func() {
		for _, p := range procs {
			stopProcess(p)
		}
	}
	for i := 0; i < o.Matchers; i++ {
		l := &countingWriter{w: o.Verbose, needle: []byte("msg=decision"), ready: make(chan struct{})}
		mp := exec.CommandContext(ctx, filepath.Join(o.BinDir, "palm-matcher"),
			"-broker", brokerURL, "-matcher-key", filepath.Join(dir, "matcher.key"), "-devices", filepath.Join(dir, "devices"),
			"-result-key", resultKeyFile, "-command-key", filepath.Join(dir, "command.pub"), "-gallery", filepath.Join(dir, "gallery"), "-gallery-key", filepath.Join(dir, "gallery.key"),
			"-metrics-listen", "", "-client-id", fmt.Sprintf("palm-matcher-%d", i+1))
		mp.Stderr, mp.Stdout = l, o.Verbose
		if err := mp.Start(); err != nil {
			return logs, stop, fmt.Errorf("starting palm-matcher: %w", err)
		}
		procs = append(procs, &proc{cmd: mp})
		logs = append(logs, l)
	}
	// Every matcher loads the gallery (a second or more at 100,000
	// entries) and subscribes before the first enrol command goes out.
	for i, l := range logs {
		select {
		case <-l.ready:
		case <-time.After(matcherStartTimeout):
			return logs, stop, fmt.Errorf("demo: palm-matcher-%d not subscribed after %v", i+1, matcherStartTimeout)
		case <-ctx.Done():
			return logs, stop, ctx.Err()
		}
	}
	return logs, stop, nil
}

// matcherStartTimeout bounds a matcher's start: gallery load and
// subscription.
const matcherStartTimeout = 2 * time.Minute

// writeConfig writes palmd's configuration for the demo.
func writeConfig(dir, scenPath, brokerURL string) (string, error) {
	cfg := fmt.Sprintf(`device_id: %s
sensor: {kind: sim, sim: {scenario: %q, realtime: false, seed: 1}}
capture: {feedback: 10ms}
keys: {device: %q, matcher: %q, result: %q, command: %q}
mqtt: {brokers: [%q], result_deadline: 5s, telemetry_interval: 10s}
diagnostics: {listen: "127.0.0.1:0"}
state_dir: %q
`, device, scenPath, filepath.Join(dir, "device.key"), filepath.Join(dir, "matcher.pub"), filepath.Join(dir, "result.pub"),
		filepath.Join(dir, "command.pub"), brokerURL, dir)
	path := filepath.Join(dir, "palmd.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// cloud is the demo's stand-in for the service that starts enrolments:
// it learns the device's boot id from its retained status and publishes
// signed enrol commands.
type cloud struct {
	mq    mqtt.Client
	key   ed25519.PrivateKey
	boots chan string
	boot  string
}

func dialCloud(brokerURL string, key ed25519.PrivateKey) (*cloud, error) {
	c := &cloud{key: key, boots: make(chan string, 4)}
	c.mq = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("demo-cloud"))
	if tok := c.mq.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connecting to the demo broker: %v", tok.Error())
	}
	// Commands name the device's boot id, from its retained status.
	c.mq.Subscribe(protocol.TopicsFor(device).Status, 1, func(_ mqtt.Client, m mqtt.Message) {
		if s, err := protocol.ParseStatus(m.Payload()); err == nil && s.State == "online" {
			select {
			case c.boots <- s.Boot:
			default:
			}
		}
	}).WaitTimeout(5 * time.Second)
	return c, nil
}

func (c *cloud) close() { c.mq.Disconnect(50) }

// openSession publishes a signed enrol command for p's session.
func (c *cloud) openSession(p *person) error {
	if c.boot == "" {
		select {
		case c.boot = <-c.boots:
		case <-time.After(10 * time.Second):
			return errors.New("demo: palmd did not announce itself online")
		}
	}
	b, err := protocol.SignCommand(c.key, protocol.Command{Device: device, ID: "enrol-" + p.name, Kind: protocol.CommandEnroll,
		Session: hex.EncodeToString(p.session[:]), Samples: 3, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: c.boot})
	if err != nil {
		return err
	}
	tok := c.mq.Publish(protocol.TopicsFor(device).Cmd, 1, false, b)
	tok.WaitTimeout(5 * time.Second)
	return tok.Error()
}

// runPalmd runs palmd through the scenario, opening each enrolment
// session in turn, and returns a judged row per presentation.
func runPalmd(ctx context.Context, o Options, cfgPath string, c *cloud, people, enrolling []*person) ([]row, error) {
	palmd := exec.CommandContext(ctx, filepath.Join(o.BinDir, "palmd"), "-config", cfgPath, "-exit-when-scenario-ends")
	stderr, err := palmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := palmd.Start(); err != nil {
		return nil, fmt.Errorf("starting palmd: %w", err)
	}
	var rows []row
	next := 0
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(o.Verbose, line)
		kv := parseLogLine(line)
		switch kv["msg"] {
		case "palmd running":
			time.Sleep(300 * time.Millisecond) // the device subscribes to its command topic on connect
			if err := c.openSession(enrolling[0]); err != nil {
				return rows, err
			}
		case "presentation":
			r := judge(kv, people)
			rows = append(rows, r)
			mark := "✓"
			if !r.ok {
				mark = "✗ WRONG"
			}
			decision := r.got
			if r.attack != "" {
				decision += " (" + r.attack + ")"
			}
			fmt.Fprintf(o.Out, "%-16s %-9s %-9s %-7.3f %11d ms %10d ms  %s\n", r.scene, r.expected, decision, r.score, r.inView, r.ms, mark)
			if r.got != "enrolled" {
				continue
			}
			for _, p := range enrolling {
				if strings.HasPrefix(r.scene, p.name+"/") {
					p.enrolled = r.subject
				}
			}
			if next++; next < len(enrolling) {
				if err := c.openSession(enrolling[next]); err != nil {
					return rows, err
				}
			}
		}
	}
	if err := palmd.Wait(); err != nil {
		return rows, fmt.Errorf("palmd: %w", err)
	}
	return rows, nil
}

// countingWriter passes a matcher's log through, counts lines holding
// needle, and closes ready when the matcher has subscribed to captures.
type countingWriter struct {
	mu     sync.Mutex
	w      io.Writer
	needle []byte
	n      int
	ready  chan struct{}
	seen   bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n += bytes.Count(p, c.needle)
	if !c.seen && bytes.Contains(p, []byte("matcher subscribed")) && bytes.Contains(p, []byte(protocol.SharedCaptureFilter)) {
		c.seen = true
		close(c.ready)
	}
	c.mu.Unlock()
	return c.w.Write(p)
}

func (c *countingWriter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// judge compares a presentation with what should have happened.
func judge(kv map[string]string, people []*person) row {
	r := row{scene: kv["scene"], got: kv["outcome"], subject: kv["subject"], attack: kv["attack"]}
	r.score, _ = strconv.ParseFloat(kv["score"], 64)
	r.ms, _ = strconv.ParseInt(kv["still_to_result_ms"], 10, 64)
	r.inView, _ = strconv.ParseInt(kv["in_view_to_result_ms"], 10, 64)
	name, step, enrol := strings.Cut(r.scene, "/")
	switch {
	case strings.HasPrefix(r.scene, attackScene):
		r.expected = "attack"
	case enrol && step == "enrol3":
		r.expected = "enrolled"
	case enrol:
		r.expected = "retry"
	default:
		r.expected = "no_match"
		for i, p := range people {
			if p.name == name && i < len(people) && p.enrolled != "" {
				r.expected = "match"
				r.ok = r.got == "match" && r.subject == p.enrolled
				return r
			}
		}
	}
	r.ok = r.got == r.expected
	return r
}

func summarise(out io.Writer, rows []row, enrolling []*person, want int) error {
	correct := 0
	var lat, inView []int64
	for _, r := range rows {
		if r.ok {
			correct++
		}
		if r.got == "match" || r.got == "no_match" {
			lat = append(lat, r.ms)
			inView = append(inView, r.inView)
		}
	}
	q := func(v []int64, p float64) int64 {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[int(p*float64(len(v)-1)+0.5)]
	}
	fmt.Fprintf(out, "\n%d of %d decisions correct (%d presentations expected); identification with liveness, median (p95): hand in view → result %d ms (%d ms), still → result %d ms (%d ms)\n",
		correct, len(rows), want, q(inView, 0.5), q(inView, 0.95), q(lat, 0.5), q(lat, 0.95))
	if correct != len(rows) || len(rows) != want {
		return fmt.Errorf("demo: %d wrong decisions, %d of %d presentations seen", len(rows)-correct, len(rows), want)
	}
	return nil
}

// parseLogLine splits a log/slog text line into its key=value pairs.
func parseLogLine(line string) map[string]string {
	kv := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && (rest[end] != '"' || rest[end-1] == '\\') {
				end++
			}
			if end >= len(rest) {
				break
			}
			v, _ = strconv.Unquote(rest[:end+1])
			line = rest[end+1:]
		} else {
			v, line, _ = strings.Cut(rest, " ")
		}
		kv[k] = v
	}
	return kv
}

// padGallery writes n stand-in entries into the demo's gallery file, as
// if n people had enrolled before: mosaics of synthetic bit-plane palms
// (templatetest.Mosaic), not rendered ones, so that identification runs
// at that gallery size; none resembles a demo person.
func padGallery(dir string, n int) error {
	if n <= 0 {
		return nil
	}
	key, err := matcher.ReadGalleryKey(filepath.Join(dir, "gallery.key"))
	if err != nil {
		return err
	}
	s, err := matcher.OpenFileStore(filepath.Join(dir, "gallery"), key)
	if err != nil {
		return err
	}
	defer s.Close()
	src := make([]*template.Template, 64)
	for i := range src {
		src[i] = templatetest.Palm(uint64(1<<40+i), 0, 0)
	}
	const batch = 10_000
	for lo := 0; lo < n; lo += batch {
		changes := make([]matcher.Change, 0, batch)
		for i := lo; i < min(n, lo+batch); i++ {
			changes = append(changes, matcher.Change{Kind: matcher.ChangePut, Subject: fmt.Sprintf("standin-%07d", i), Template: templatetest.Mosaic(src, uint64(i))})
		}
		if err := s.Update(func(matcher.Change) error { return nil }, nil, func() ([]matcher.Change, error) { return changes, nil }); err != nil {
			return fmt.Errorf("demo: padding the gallery: %w", err)
		}
	}
	return nil
}

// provision writes the demo's keys: the device key pair, a matcher key
// pair, the matcher's result-signing key and the cloud's command key.
func provision(dir string) (cmdKey ed25519.PrivateKey, resultKeyFile string, err error) {
	if err := os.MkdirAll(filepath.Join(dir, "devices"), 0o700); err != nil {
		return nil, "", err
	}
	_, dev, _ := ed25519.GenerateKey(nil)
	_, res, _ := ed25519.GenerateKey(nil)
	_, cmd, _ := ed25519.GenerateKey(nil)
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteHybrid)
	if err != nil {
		return nil, "", err
	}
	devPriv, devPub, _ := keyfile.EncodeDevice(dev)
	resPriv, resPub, _ := keyfile.EncodeDevice(res)
	_, cmdPub, _ := keyfile.EncodeDevice(cmd)
	mPriv, mPub, _ := keyfile.EncodeMatcher(mk)
	gk := make([]byte, 32)
	_, _ = rand.Read(gk)
	files := []struct {
		name string
		data []byte
	}{
		{"device.key", devPriv}, {"devices/" + device + ".pub", devPub}, {"result.key", resPriv}, {"result.pub", resPub},
		{"command.pub", cmdPub}, {"matcher.key", mPriv}, {"matcher.pub", mPub},
	}
	for _, f := range files {
		if err := keyfile.WriteNew(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, "", err
		}
	}
	if err := matcher.WriteGalleryKey(filepath.Join(dir, "gallery.key"), gk); err != nil {
		return nil, "", err
	}
	return cmd, filepath.Join(dir, "result.key"), nil
}

type proc struct {
	cmd *exec.Cmd
}

var stopMu sync.Mutex

func stopProcess(p *proc) {
	stopMu.Lock()
	defer stopMu.Unlock()
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}
