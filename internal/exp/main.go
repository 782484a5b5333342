// Temporary experiment: dump templates of a synthetic set (not committed).
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
)

func main() {
	dir, out := os.Args[1], os.Args[2]
	raw, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	var m struct {
		Images []struct {
			File     string
			Identity int
			Session  int
		}
	}
	json.Unmarshal(raw, &m)
	sort.Slice(m.Images, func(a, b int) bool { return m.Images[a].File < m.Images[b].File })
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	f, _ := os.Create(out)
	defer f.Close()
	for _, im := range m.Images {
		mat := gocv.IMRead(filepath.Join(dir, im.File), gocv.IMReadGrayScale)
		fr := sensor.Frame{Width: mat.Cols(), Height: mat.Rows(), Pix: mat.ToBytes()}
		mat.Close()
		res, err := ex.Extract(&fr, nil)
		if err != nil {
			fmt.Println(im.File, err)
			continue
		}
		b, _ := res.Template.MarshalBinary()
		binary.Write(f, binary.LittleEndian, [3]int32{int32(im.Identity), int32(im.Session), int32(len(b))})
		f.Write(b)
	}
}
