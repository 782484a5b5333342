package v4l2cam

import (
	"bytes"
	"image"
	"image/jpeg"
	"os/exec"
	"strings"
	"testing"
)

func TestToGrey(t *testing.T) {
	const w, h, pad = 5, 3, 3
	// GREY with 3 bytes of padding per row.
	var grey []byte
	var want []byte
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := byte(10*y + x)
			grey = append(grey, v)
			want = append(want, v)
		}
		grey = append(grey, 0xEE, 0xEE, 0xEE)
	}
	_ = pad
	dst := make([]byte, w*h)
	if err := toGrey(dst, grey, FormatGREY, w, h); err != nil || !bytes.Equal(dst, want) {
		t.Fatalf("GREY with padding: %v %v", dst, err)
	}
	// YUYV: luma at even bytes, rows padded.
	var yuyv []byte
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			yuyv = append(yuyv, byte(10*y+x), 0x80)
		}
		yuyv = append(yuyv, 0xEE, 0xEE)
	}
	clear(dst)
	if err := toGrey(dst, yuyv, FormatYUYV, w, h); err != nil || !bytes.Equal(dst, want) {
		t.Fatalf("YUYV: %v %v", dst, err)
	}
	// MJPEG: a grey gradient survives the round trip closely.
	img := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 2)
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 16*8)
	if err := toGrey(out, jb.Bytes(), FormatMJPG, 16, 8); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if d := int(out[i]) - int(img.Pix[i]); d > 3 || d < -3 {
			t.Fatalf("MJPEG pixel %d: %d vs %d", i, out[i], img.Pix[i])
		}
	}
	// Malformed input is an error, never a panic.
	for _, tc := range []struct {
		name string
		src  []byte
		f    uint32
		w, h int
	}{
		{"short GREY", make([]byte, 10), FormatGREY, w, h},
		{"short YUYV", make([]byte, 2*w*h-1), FormatYUYV, w, h},
		{"not JPEG", []byte("nope"), FormatMJPG, w, h},
		{"JPEG of another size", jb.Bytes(), FormatMJPG, 8, 8},
		{"unknown format", make([]byte, 100), 0x31313131, w, h},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := toGrey(make([]byte, tc.w*tc.h), tc.src, tc.f, tc.w, tc.h); err == nil {
				t.Error("accepted")
			}
		})
	}
	if err := toGrey(make([]byte, 3), grey, FormatGREY, w, h); err == nil {
		t.Error("wrong destination size accepted")
	}
}

func FuzzToGrey(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6}, uint8(0), uint8(2), uint8(3))
	f.Fuzz(func(t *testing.T, src []byte, which, w, h uint8) {
		fmts := []uint32{FormatGREY, FormatY8, FormatYUYV, FormatMJPG}
		if w == 0 || h == 0 {
			return
		}
		_ = toGrey(make([]byte, int(w)*int(h)), src, fmts[int(which)%len(fmts)], int(w), int(h))
	})
}

func TestOpenFailsClearly(t *testing.T) {
	for _, dev := range []string{"/dev/video-missing", "/dev/null"} {
		_, err := Open(Config{Device: dev, Width: 640, Height: 480})
		if err == nil || !strings.Contains(err.Error(), dev) {
			t.Errorf("Open(%s): %v", dev, err)
		}
	}
	if _, err := Open(Config{Device: "/dev/null"}); err == nil {
		t.Error("zero frame size accepted")
	}
}

// TestNoCgo: the camera package must build without cgo (its tests run
// statically linked inside a VM), so it must never pull in gocv.
func TestNoCgo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	if strings.Contains(string(out), "gocv.io") {
		t.Fatal("sensor/v4l2cam depends on gocv")
	}
	cmd := exec.Command("go", "build", "-o", "/dev/null", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build: %v\n%s", err, out)
	}
}
