// Command scorer runs one version of the recognition pipeline — presence,
// gates, ROI and features, exactly as the daemon does — over a synthetic
// set and writes every pair's score as CSV (a, b, kind, cross, score) on
// standard output, plus one line per image that failed to extract (kind
// "fte"). The scores carry no biometric content.
//
// It uses only the API that every pipeline version keeps
// (imaging.NewExtractor, Extractor.Extract, template.Compare), so that
// `make calibrate` can copy this file into the tree of the tagged
// recognition-v1 release and build it there: the simulator is calibrated
// against what that pipeline scored on real palms. `palmctl calibrate`
// reads the CSV.
package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/template"
)

type entry struct {
	File     string `json:"file"`
	Identity int    `json:"identity"`
	Session  int    `json:"session"`
}

type image struct {
	entry
	tpl *template.Template
	why string
}

func main() {
	dir := flag.String("dir", "", "synthetic set (with manifest.json)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "scorer:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return err
	}
	var m struct{ Images []entry }
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	imgs := make([]image, len(m.Images))
	for i, e := range m.Images {
		imgs[i].entry = e
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ex := imaging.NewExtractor(imaging.DefaultConfig())
			defer ex.Close()
			for i := range jobs {
				imgs[i].tpl, imgs[i].why = extract(ex, filepath.Join(dir, imgs[i].File))
			}
		}()
	}
	for i := range imgs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	out := csv.NewWriter(os.Stdout)
	defer out.Flush()
	_ = out.Write([]string{"a", "b", "kind", "cross", "score"})
	var ok []*image
	for i := range imgs {
		if imgs[i].tpl == nil {
			_ = out.Write([]string{imgs[i].File, "", "fte", "", strings.ReplaceAll(imgs[i].why, ",", ";")})
			continue
		}
		ok = append(ok, &imgs[i])
	}
	sort.Slice(ok, func(a, b int) bool { return ok[a].File < ok[b].File })
	// Rows are computed in parallel and written in order.
	rows := make([][][]string, len(ok))
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				for j := i + 1; j < len(ok); j++ {
					s, err := template.Compare(ok[i].tpl, ok[j].tpl)
					if err != nil {
						s = 0.5
					}
					kind := "impostor"
					if ok[i].Identity == ok[j].Identity {
						kind = "genuine"
					}
					rows[i] = append(rows[i], []string{ok[i].File, ok[j].File, kind,
						strconv.FormatBool(ok[i].Session != ok[j].Session), strconv.FormatFloat(s, 'f', 6, 64)})
				}
			}
		}()
	}
	for i := range ok {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, r := range rows {
		if err := out.WriteAll(r); err != nil {
			return err
		}
	}
	return out.Error()
}

func extract(ex *imaging.Extractor, path string) (*template.Template, string) {
	m := gocv.IMRead(path, gocv.IMReadGrayScale)
	defer m.Close()
	if m.Empty() {
		return nil, "unreadable"
	}
	f := sensor.Frame{Width: m.Cols(), Height: m.Rows(), Pix: m.ToBytes()}
	res, err := ex.Extract(&f, nil)
	if err != nil {
		return nil, imaging.GateOf(err).String()
	}
	t := res.Template
	res.Template.Zero()
	return &t, ""
}
