package config_test

import (
	"fmt"
	"strings"

	"github.com/palmd/palmd/config"
)

// A minimal file: everything not written takes the owning package's
// default.
func ExampleParse() {
	c, err := config.Parse(strings.NewReader(`
device_id: term-0001
keys: {device: device.key, matcher: /etc/palmd/matcher.pub, result: /etc/palmd/result.pub}
mqtt: {brokers: ["ssl://broker.example:8883"], ca: /etc/palmd/ca.pem}
`), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.DeviceID, c.Sensor.Kind, c.MQTT.ResultDeadline.D(), c.Illuminator.MaxOn.D(), c.Diagnostics.Listen)
	// Output: term-0001 sim 3s 5s 127.0.0.1:9465
}

// Every problem in a file is reported at once, one per line: file, line
// (where the key is in the file), key path, and what is wrong in words.
func ExampleParse_problems() {
	_, err := config.Parse(strings.NewReader("device_id: term/1\ncapture: {feedback: soon}\n"), nil)
	fmt.Println(err)
	// Output:
	// config:1: device_id: "term/1" must be 1–64 letters, digits, '.', '_' or '-'
	// config:2: capture.feedback: "soon" is not a duration (like "500ms", "3s" or "1m")
	// config: keys.device: required (the device's Ed25519 private key)
	// config: keys.matcher: required (the matcher's public key)
	// config: keys.result: required (the matcher's result-signing public key)
	// config: mqtt.brokers: at least one broker URL is required
}
