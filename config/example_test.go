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

// Every problem in a file is reported at once, each with its key or line.
func ExampleParse_problems() {
	_, err := config.Parse(strings.NewReader("device_id: term/1\ncapture: {feedback: soon}\n"), nil)
	for _, p := range strings.Split(err.Error(), "; ") {
		fmt.Println(p)
	}
	// Output:
	// config: line 2: "soon" is not a duration (like "500ms" or "3s")
	// device_id: "term/1" must be 1–64 letters, digits, '.', '_' or '-'
	// keys.device: required (the device's Ed25519 private key)
	// keys.matcher: required (the matcher's public key)
	// keys.result: required (the matcher's result-signing public key)
	// mqtt.brokers: at least one broker URL is required
}
