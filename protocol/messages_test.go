package protocol

import (
	"strings"
	"testing"
)

func TestBaseTopics(t *testing.T) {
	for _, tc := range []struct {
		base string
		ok   bool
	}{
		{"palm/v1", true}, {"acme/palm-v2", true}, {"site_3/palm/v1", true}, {"p", true},
		{"", false}, {"/palm/v1", false}, {"palm/v1/", false}, {"palm//v1", false}, {"palm/+/v1", false},
		{"palm/#", false}, {"$SYS/palm", false}, {"palm.v1", false}, {"palm v1", false}, {"pälm/v1", false},
		{strings.Repeat("a", MaxBaseTopic+1), false},
	} {
		t.Run(tc.base, func(t *testing.T) {
			if err := ValidBaseTopic(tc.base); (err == nil) != tc.ok {
				t.Errorf("ValidBaseTopic(%q) = %v", tc.base, err)
			}
		})
	}
	tp := NewTopics("acme/palm-v2", "term-1")
	if tp.Capture != "acme/palm-v2/term-1/capture" || tp.CmdAck != "acme/palm-v2/term-1/cmd/ack" {
		t.Errorf("topics %+v", tp)
	}
	if NewTopics("", "d") != TopicsFor("d") || SharedCaptureFilterFor("") != SharedCaptureFilter || CommandFilterFor("") != CommandFilter {
		t.Error("the default base topic differs from palm/v1")
	}
	for topic, want := range map[string]string{"acme/palm-v2/term-1/capture": "term-1", "palm/v1/term-1/capture": "", "acme/palm-v2/term-1": "", "acme/palm-v2x/term-1/cmd": ""} {
		if got := DeviceOfTopic("acme/palm-v2", topic); got != want {
			t.Errorf("DeviceOfTopic(%q) = %q, want %q", topic, got, want)
		}
	}
}
