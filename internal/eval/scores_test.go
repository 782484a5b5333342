package eval

import (
	"bytes"
	"strings"
	"testing"
)

func TestScoresRoundTrip(t *testing.T) {
	pairs := []Score{
		{A: "0001_00.png", B: "0001_03.png", Genuine: true, Cross: true, Score: 0.25},
		{A: "0001_00.png", B: "0002_00.png", Score: 0.46},
	}
	var buf bytes.Buffer
	if err := WriteScores(&buf, pairs, []Image{{File: "0003_01.png", Gate: "blurred"}}); err != nil {
		t.Fatal(err)
	}
	set, err := ReadScores(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Pairs) != 2 || set.Pairs[0] != pairs[0] || set.Pairs[1] != pairs[1] {
		t.Errorf("pairs %+v", set.Pairs)
	}
	if len(set.Failed) != 1 || set.Failed[0] != "0003_01.png" {
		t.Errorf("failed %v", set.Failed)
	}
}

func TestReadScoresRejects(t *testing.T) {
	const head = "a,b,kind,cross,score\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "scores"},
		{"wrong header", "x,y,z,w,v\n", "header"},
		{"unknown kind", head + "a,b,friend,false,0.3\n", "line 2: kind"},
		{"score not a number", head + "a,b,genuine,false,abc\n", "line 2: score"},
		{"score NaN", head + "a,b,genuine,false,NaN\n", "line 2: score"},
		{"score above 1", head + "a,b,impostor,false,1.5\n", "line 2: score"},
		{"too few fields", head + "a,b,impostor\n", "fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadScores(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzReadScores(f *testing.F) {
	f.Add("a,b,kind,cross,score\na,b,genuine,true,0.2\nc,,fte,,blurred\n")
	f.Add("a,b,kind,cross,score\n\"a\nb\",b,impostor,false,0.5\n")
	f.Fuzz(func(t *testing.T, in string) {
		set, err := ReadScores(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, p := range set.Pairs {
			if !(p.Score >= 0 && p.Score <= 1) {
				t.Fatalf("accepted score %v", p.Score)
			}
		}
		_ = set.Summarise(len(set.Pairs))
	})
}

func TestCalibrate(t *testing.T) {
	inside := Summary{
		FTE: 0, ImpMean: 0.457, ImpStd: 0.015, BeyondSixSigma: 3, ImpMinSigma: 8,
		All: Rates{GenMean: 0.263, GenStd: 0.05, DPrime: 5, EER: 0.02, FRRAtFAR: map[string]float64{"0.0001": 0.03}},
	}
	for _, tc := range []struct {
		name   string
		change func(*Summary)
		ok     bool
	}{
		{"like real palms", func(*Summary) {}, true},
		{"genuine pairs too alike", func(s *Summary) { s.All.GenMean, s.All.GenStd, s.All.DPrime = 0.195, 0.024, 12.6 }, false},
		{"no impostor tail", func(s *Summary) { s.BeyondSixSigma = 0 }, false},
		{"FRR unmeasured", func(s *Summary) { s.All.FRRAtFAR = map[string]float64{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := inside
			s.All.FRRAtFAR = map[string]float64{"0.0001": 0.03}
			tc.change(&s)
			rows, ok := Calibrate(s)
			if ok != tc.ok {
				var buf bytes.Buffer
				_ = WriteCalibration(&buf, rows)
				t.Errorf("ok = %v, want %v\n%s", ok, tc.ok, buf.String())
			}
		})
	}
}
