package template

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of a template, version 1 (docs/template-format.md describes
// it byte by byte). All multi-byte integers are little-endian.
//
//	0    4  magic "PTPL"
//	4    1  format version (1)
//	5    1  algorithm version
//	6    1  grid side (32)
//	7    1  orientations (6)
//	8    1  modalities (2)
//	9    1  quality (0–100)
//	10   2  offset (int16, OffsetUnits, within ±MaxOffset; zero before
//	        algorithm 6, when these bytes were reserved)
//	12   1536 planes: modality, orientation, row → uint32 (bit x = column x)
//	1548 256  masks: modality, row → uint32
//	1804      end
const (
	WireVersion = 1
	// WireAlgorithmOffset is the offset of the algorithm version byte: the
	// one byte a decoded template may re-encode differently, when an
	// older version with the same bits was read as today's.
	WireAlgorithmOffset = 5
	headerSize          = 12
	// WireSize is the exact length of an encoded template.
	WireSize = headerSize + int(Modalities)*Orientations*Grid*4 + int(Modalities)*Grid*4
)

var wireMagic = [4]byte{'P', 'T', 'P', 'L'}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("template: malformed")

// AppendBinary appends the wire encoding of t to b.
func (t *Template) AppendBinary(b []byte) ([]byte, error) {
	if t.Quality > 100 {
		return b, fmt.Errorf("template: quality %d > 100", t.Quality)
	}
	b = append(b, wireMagic[:]...)
	if t.Offset < -MaxOffset || t.Offset > MaxOffset {
		return b, fmt.Errorf("template: offset %d outside ±%d", t.Offset, MaxOffset)
	}
	b = append(b, WireVersion, t.Version, Grid, Orientations, byte(Modalities), t.Quality)
	b = binary.LittleEndian.AppendUint16(b, uint16(t.Offset))
	for m := range t.Planes {
		for o := range t.Planes[m] {
			for _, r := range t.Planes[m][o] {
				b = binary.LittleEndian.AppendUint32(b, r)
			}
		}
	}
	for m := range t.Mask {
		for _, r := range t.Mask[m] {
			b = binary.LittleEndian.AppendUint32(b, r)
		}
	}
	return b, nil
}

// MarshalBinary implements encoding.BinaryMarshaler. The result is as
// secret as the template: zero it when done.
func (t *Template) MarshalBinary() ([]byte, error) {
	return t.AppendBinary(make([]byte, 0, WireSize))
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. Decoding is
// strict: wrong magic, versions, dimensions, reserved bytes, quality, length
// or trailing bytes are errors (wrapping ErrMalformed), never panics. On
// error t is left zero. A template of an older algorithm version with the
// same feature bits (see AlgorithmVersion) is read as this version's; one
// from before version 6 is centred as it is read (Centre: about 6 ms), so
// that a gallery enrolled then compares as one enrolled today.
func (t *Template) UnmarshalBinary(b []byte) error {
	older, err := t.decode(b)
	if err != nil {
		return err
	}
	if older {
		// Written before templates carried an offset (a gallery enrolled
		// then): measured now, as Centre would have at enrolment, so
		// that its entries compare centred like new ones. A template
		// overlapping too little of the cohort keeps offset zero, as a
		// new one would.
		_ = Centre(t)
	}
	return nil
}

// UnmarshalUncentred is UnmarshalBinary without measuring an older
// template's offset: it stays zero. For a reader that centres every
// template itself, as the matcher does with what devices send (it never
// trusts a device's offset): centring on reading as well would cost a
// second Centre, about 6 ms, for every capture from a device not yet
// updated.
func (t *Template) UnmarshalUncentred(b []byte) error {
	_, err := t.decode(b)
	return err
}

// decode is UnmarshalBinary without the centring; older reports a
// template written before centredVersion, which has no offset yet.
func (t *Template) decode(b []byte) (older bool, err error) {
	*t = Template{}
	switch {
	case len(b) < headerSize:
		return false, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformed, len(b), headerSize)
	case [4]byte(b[0:4]) != wireMagic:
		return false, fmt.Errorf("%w: bad magic", ErrMalformed)
	case b[4] != WireVersion:
		return false, fmt.Errorf("%w: format version %d, want %d", ErrMalformed, b[4], WireVersion)
	case b[WireAlgorithmOffset] < sameBitsVersion || b[WireAlgorithmOffset] > AlgorithmVersion:
		return false, fmt.Errorf("%w: algorithm version %d, want %d–%d", ErrMalformed, b[WireAlgorithmOffset], sameBitsVersion, AlgorithmVersion)
	case b[6] != Grid || b[7] != Orientations || b[8] != byte(Modalities):
		return false, fmt.Errorf("%w: dimensions %d×%d×%d, want %d×%d×%d", ErrMalformed, b[6], b[7], b[8], Grid, Orientations, Modalities)
	case b[9] > 100:
		return false, fmt.Errorf("%w: quality %d > 100", ErrMalformed, b[9])
	case b[WireAlgorithmOffset] < centredVersion && (b[10] != 0 || b[11] != 0):
		return false, fmt.Errorf("%w: reserved bytes 10–11 set in an algorithm version %d template", ErrMalformed, b[WireAlgorithmOffset])
	case int16(binary.LittleEndian.Uint16(b[10:])) < -MaxOffset || int16(binary.LittleEndian.Uint16(b[10:])) > MaxOffset:
		return false, fmt.Errorf("%w: offset %d outside ±%d", ErrMalformed, int16(binary.LittleEndian.Uint16(b[10:])), MaxOffset)
	case len(b) != WireSize:
		return false, fmt.Errorf("%w: %d bytes, want exactly %d", ErrMalformed, len(b), WireSize)
	}
	// Versions from sameBitsVersion on differ only in how they compare.
	t.Version, t.Quality, t.Offset = AlgorithmVersion, b[9], int16(binary.LittleEndian.Uint16(b[10:]))
	p := b[headerSize:]
	for m := range t.Planes {
		for o := range t.Planes[m] {
			for y := range t.Planes[m][o] {
				t.Planes[m][o][y] = binary.LittleEndian.Uint32(p)
				p = p[4:]
			}
		}
	}
	for m := range t.Mask {
		for y := range t.Mask[m] {
			t.Mask[m][y] = binary.LittleEndian.Uint32(p)
			p = p[4:]
		}
	}
	return b[WireAlgorithmOffset] < centredVersion, nil
}
