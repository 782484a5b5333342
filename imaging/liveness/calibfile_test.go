package liveness_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/palmd/palmd/imaging/liveness"
)

// measuredFile is a calibration as a terminal model's pilot would measure
// it: the default's cues moved a little, its own threshold.
func measuredFile(t testing.TB) liveness.CalibrationFile {
	t.Helper()
	cal := liveness.DefaultCalibration()
	n := cal[liveness.CueTexture]
	n.Median, n.Spread = 1.21, 0.08 // a noisier camera than the simulated one
	cal[liveness.CueTexture] = n
	return liveness.CalibrationFile{Calibration: cal, Threshold: 3.9, Presentations: 412, Noise: liveness.NoiseModel{Read: 0.61, Shot: 0.0031, Corr: 0.38}}
}

func TestCalibrationFileRoundTrip(t *testing.T) {
	f := measuredFile(t)
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := liveness.ParseCalibrationFile(b)
	if err != nil {
		t.Fatalf("parse what Marshal wrote: %v\n%s", err, b)
	}
	if got.Threshold != f.Threshold || got.Presentations != f.Presentations || got.Noise != f.Noise {
		t.Errorf("threshold, presentations, noise = %v, %d, %+v; want %v, %d, %+v", got.Threshold, got.Presentations, got.Noise, f.Threshold, f.Presentations, f.Noise)
	}
	// A file from cues that did not record their noise model has none.
	f.Noise = liveness.NoiseModel{}
	b, err = f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := liveness.ParseCalibrationFile(b); err != nil || got.Noise != (liveness.NoiseModel{}) || strings.Contains(string(b), "noise") {
		t.Errorf("without a noise model: %+v, %v\n%s", got.Noise, err, b)
	}
	for _, c := range liveness.Cues {
		if got.Calibration[c] != f.Calibration[c] {
			t.Errorf("%s: %+v, want %+v", c, got.Calibration[c], f.Calibration[c])
		}
	}
	// The same raw cues score the same under the file's calibration.
	raw := map[liveness.Cue]float64{liveness.CueTexture: 1.5, liveness.CueVeins: 0.004}
	if a, b := f.Calibration.Fuse(raw, f.Threshold), got.Calibration.Fuse(raw, got.Threshold); a.Score != b.Score || a.Attack != b.Attack {
		t.Errorf("decision %+v after the round trip, %+v before", b, a)
	}
}

// fileJSON is measuredFile's JSON as a map, to break one field at a time.
func fileJSON(t *testing.T) map[string]any {
	t.Helper()
	b, err := measuredFile(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseCalibrationFileRefuses(t *testing.T) {
	cue := func(m map[string]any, c liveness.Cue) map[string]any {
		return m["cues"].(map[string]any)[string(c)].(map[string]any)
	}
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		raw   string // instead of the edited JSON
		error string
	}{
		{name: "not JSON", raw: "median: 1", error: "invalid character"},
		{name: "two objects", raw: `{"version":1}{"version":1}`, error: "after the JSON object"},
		{name: "too large", raw: `{"version":1,"x":"` + strings.Repeat("a", liveness.MaxCalibrationFileBytes) + `"}`, error: "more than"},
		{name: "other version", edit: func(m map[string]any) { m["version"] = 2 }, error: "version 2"},
		{name: "unknown field", edit: func(m map[string]any) { m["weather"] = 1 }, error: "unknown field"},
		{name: "noise not an object", edit: func(m map[string]any) { m["noise"] = 1 }, error: "cannot unmarshal"},
		{name: "noise all zero", edit: func(m map[string]any) { m["noise"] = map[string]any{} }, error: "noise given but all zero"},
		{name: "noise out of bounds", edit: func(m map[string]any) { m["noise"] = map[string]any{"read": 0.5, "shot": 2, "corr": 0.4} }, error: "noise: shot 2 outside"},
		{name: "direction in the file", edit: func(m map[string]any) { cue(m, liveness.CueVeins)["high"] = true }, error: "unknown field"},
		{name: "unknown cue", edit: func(m map[string]any) { m["cues"].(map[string]any)["heat"] = map[string]any{"median": 1, "spread": 1} }, error: `unknown cue "heat"`},
		{name: "cue missing", edit: func(m map[string]any) { delete(m["cues"].(map[string]any), string(liveness.CuePulse)) }, error: "no_pulse missing"},
		{name: "no cues", edit: func(m map[string]any) { delete(m, "cues") }, error: "missing"},
		{name: "too few presentations", edit: func(m map[string]any) { m["presentations"] = 19 }, error: "fewer than 20"},
		{name: "threshold zero", edit: func(m map[string]any) { m["threshold"] = 0 }, error: "threshold 0 outside"},
		{name: "threshold too high", edit: func(m map[string]any) { m["threshold"] = 101 }, error: "threshold 101 outside"},
		{name: "negative spread", edit: func(m map[string]any) { cue(m, liveness.CueTexture)["spread"] = -0.1 }, error: "spread -0.1 outside"},
		{name: "zero spread", edit: func(m map[string]any) { cue(m, liveness.CueTexture)["spread"] = 0 }, error: "do not vary"},
		{name: "huge median", edit: func(m map[string]any) { cue(m, liveness.CueEdge)["median"] = 1e300 }, error: "median"},
		{name: "median a string", edit: func(m map[string]any) { cue(m, liveness.CueEdge)["median"] = "1.6" }, error: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.raw)
			if tt.edit != nil {
				m := fileJSON(t)
				tt.edit(m)
				var err error
				if data, err = json.Marshal(m); err != nil {
					t.Fatal(err)
				}
			}
			_, err := liveness.ParseCalibrationFile(data)
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("error %v, want one saying %q", err, tt.error)
			}
		})
	}
	t.Run("zero spread with a floor", func(t *testing.T) {
		// sheet_around_hand's living values mostly sit at 0: its spread
		// may be 0, the floor (MinSpread) standing in.
		m := fileJSON(t)
		cue(m, liveness.CueSheet)["spread"] = 0
		data, _ := json.Marshal(m)
		f, err := liveness.ParseCalibrationFile(data)
		if err != nil {
			t.Fatal(err)
		}
		if n := f.Calibration[liveness.CueSheet]; n.MinSpread <= 0 || math.IsInf(n.Z(0.5), 0) {
			t.Errorf("sheet norm %+v: no floor", n)
		}
	})
}

func TestMarshalRefusesAnIncompleteCalibration(t *testing.T) {
	f := measuredFile(t)
	delete(f.Calibration, liveness.CueVeins)
	if _, err := f.Marshal(); err == nil || !strings.Contains(err.Error(), "no_veins missing") {
		t.Fatalf("error %v, want the missing cue named", err)
	}
}

// FuzzParseCalibrationFile: whatever a file holds, the parser returns an
// error or a calibration that scores finitely and survives a round trip.
func FuzzParseCalibrationFile(f *testing.F) {
	good, err := measuredFile(f).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1))
	f.Add([]byte(`{"version":1,"presentations":20,"threshold":1e-300,"cues":{}}`))
	f.Add([]byte(`{"cues":{"no_veins":{"median":NaN}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := liveness.ParseCalibrationFile(data)
		if err != nil {
			return
		}
		raw := map[liveness.Cue]float64{}
		for _, c := range liveness.Cues {
			raw[c] = 0.5
		}
		if d := cf.Calibration.Fuse(raw, cf.Threshold); math.IsNaN(d.Score) {
			t.Fatalf("NaN score from an accepted file %q", data)
		}
		again, err := cf.Marshal()
		if err != nil {
			t.Fatalf("accepted file does not marshal: %v", err)
		}
		back, err := liveness.ParseCalibrationFile(again)
		if err != nil {
			t.Fatalf("marshalled file does not parse: %v", err)
		}
		for _, c := range liveness.Cues {
			if back.Calibration[c] != cf.Calibration[c] {
				t.Fatalf("%s changed over a round trip: %+v → %+v", c, cf.Calibration[c], back.Calibration[c])
			}
		}
	})
}
