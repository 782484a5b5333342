package v4l2cam

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
)

// Pixel formats (V4L2 fourcc codes) this camera accepts, best first: NIR
// sensors deliver grey; YUYV's luma is grey; MJPEG costs a decode.
const (
	FormatGREY uint32 = 'G' | 'R'<<8 | 'E'<<16 | 'Y'<<24
	FormatY8   uint32 = 'Y' | '8'<<8 | ' '<<16 | ' '<<24
	FormatYUYV uint32 = 'Y' | 'U'<<8 | 'Y'<<16 | 'V'<<24
	FormatMJPG uint32 = 'M' | 'J'<<8 | 'P'<<16 | 'G'<<24
)

var preference = []uint32{FormatGREY, FormatY8, FormatYUYV, FormatMJPG}

func fourcc(f uint32) string {
	return string([]byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)})
}

// toGrey converts one driver buffer to packed 8-bit grey in dst
// (width×height). The driver's row stride (bytesperline) may exceed the
// row's pixels; webcam v0.6.1 does not report it, so it is derived from the
// buffer length, which the driver sets to stride × height.
func toGrey(dst, src []byte, format uint32, width, height int) error {
	if len(dst) != width*height {
		return fmt.Errorf("v4l2cam: destination %d bytes for %dx%d", len(dst), width, height)
	}
	switch format {
	case FormatGREY, FormatY8:
		stride, err := strideOf(len(src), width, height)
		if err != nil {
			return err
		}
		for y := 0; y < height; y++ {
			copy(dst[y*width:(y+1)*width], src[y*stride:y*stride+width])
		}
	case FormatYUYV:
		stride, err := strideOf(len(src), 2*width, height)
		if err != nil {
			return err
		}
		for y := 0; y < height; y++ {
			row := src[y*stride:]
			out := dst[y*width : (y+1)*width]
			for x := range out {
				out[x] = row[2*x] // Y0 U Y1 V: luma at even bytes
			}
		}
	case FormatMJPG:
		img, err := jpeg.Decode(bytes.NewReader(src))
		if err != nil {
			return fmt.Errorf("v4l2cam: MJPEG frame: %w", err)
		}
		b := img.Bounds()
		if b.Dx() != width || b.Dy() != height {
			return fmt.Errorf("v4l2cam: MJPEG frame is %dx%d, want %dx%d", b.Dx(), b.Dy(), width, height)
		}
		switch m := img.(type) {
		case *image.YCbCr:
			for y := 0; y < height; y++ {
				copy(dst[y*width:(y+1)*width], m.Y[y*m.YStride:y*m.YStride+width])
			}
		case *image.Gray:
			for y := 0; y < height; y++ {
				copy(dst[y*width:(y+1)*width], m.Pix[y*m.Stride:y*m.Stride+width])
			}
		default:
			for y := 0; y < height; y++ {
				for x := 0; x < width; x++ {
					r, g, bb, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
					dst[y*width+x] = uint8((19595*r + 38470*g + 7471*bb + 1<<15) >> 24)
				}
			}
		}
	default:
		return fmt.Errorf("v4l2cam: unsupported pixel format %q", fourcc(format))
	}
	return nil
}

// strideOf derives bytes per line from a buffer of height rows.
func strideOf(n, rowBytes, height int) (int, error) {
	if height <= 0 || n < rowBytes*height {
		return 0, fmt.Errorf("v4l2cam: short frame: %d bytes for %d rows of %d", n, height, rowBytes)
	}
	stride := n / height
	if stride < rowBytes {
		return 0, fmt.Errorf("v4l2cam: stride %d below row size %d", stride, rowBytes)
	}
	return stride, nil
}
