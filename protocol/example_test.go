package protocol_test

import (
	"crypto/ed25519"
	"fmt"

	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
)

// A device seals a template to the matcher's key and signs it; the matcher
// opens it once (a second opening is a replay).
func Example() {
	devPub, devKey, _ := ed25519.GenerateKey(nil)
	matcherKey, err := protocol.GenerateMatcherKey(protocol.SuiteHybrid)
	if err != nil {
		panic(err)
	}
	sealer := &protocol.Sealer{DeviceID: "term-0001", DeviceKey: devKey, Matcher: matcherKey.Public()}
	opener := &protocol.Opener{
		Keys:    map[protocol.KeyID]*protocol.MatcherPrivateKey{matcherKey.ID: matcherKey},
		Devices: func(id string) (ed25519.PublicKey, bool) { return devPub, id == "term-0001" },
	}

	t := &template.Template{Version: template.AlgorithmVersion, Quality: 90}
	env, hdr, err := sealer.Seal(t, protocol.PurposeIdentify, [16]byte{}) // t is zeroed
	if err != nil {
		panic(err)
	}
	got, h, err := opener.Open(env)
	fmt.Println(err, h.DeviceID, h.Purpose, h.RequestID == hdr.RequestID, got.Quality)
	_, _, err = opener.Open(env)
	fmt.Println(err != nil)
	// Output:
	// <nil> term-0001 identify true 90
	// true
}
