package matcher

import (
	"encoding/binary"
	"errors"

	"github.com/palmd/palmd/template"
)

// encodeGallery writes the plaintext of a PGAL\x03 file (tests of the
// conversion and of the old decoder).
func encodeGallery(entries []Entry, sessions map[[16]byte]*session) ([]byte, error) {
	var p []byte
	var err error
	appendTemplates := func(ts []*template.Template) {
		p = binary.BigEndian.AppendUint16(p, uint16(len(ts)))
		for _, t := range ts {
			if err == nil {
				p, err = t.AppendBinary(p)
			}
		}
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(entries)))
	for _, e := range entries {
		p = binary.BigEndian.AppendUint16(p, uint16(len(e.Subject)))
		p = append(p, e.Subject...)
		appendTemplates(e.Templates)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(sessions)))
	for id, s := range sessions {
		if len(s.device) > 255 || s.want > 255 {
			return p, errors.New("matcher: session does not fit the gallery format")
		}
		p = append(p, id[:]...)
		p = append(p, byte(len(s.device)))
		p = append(p, s.device...)
		p = append(p, byte(s.want))
		p = binary.BigEndian.AppendUint64(p, uint64(s.expires.UnixMilli()))
		closed := byte(0)
		if s.closed {
			closed = 1
		}
		p = append(p, closed)
		appendTemplates(s.samples)
	}
	return p, err
}
