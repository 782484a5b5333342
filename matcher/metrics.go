package matcher

import (
	"github.com/palmd/palmd/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the matcher's counters to Prometheus: envelopes opened
// and rejected by reason, refusals by reason, decisions by kind, gallery
// size, and the match threshold in force (it follows the gallery under
// Config.FPIR).
func (m *Matcher) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Matcher }

var (
	descOpened    = prometheus.NewDesc("palm_matcher_envelopes_opened_total", "Envelopes opened.", nil, nil)
	descRejected  = prometheus.NewDesc("palm_matcher_envelopes_rejected_total", "Envelopes rejected, by reason.", []string{"reason"}, nil)
	descDecisions = prometheus.NewDesc("palm_matcher_decisions_total", "Decisions by kind.", []string{"decision"}, nil)
	descGallery   = prometheus.NewDesc("palm_matcher_gallery_entries", "Enrolled subjects.", nil, nil)
	descRefused   = prometheus.NewDesc("palm_matcher_refused_total", "Captures and commands refused beyond envelope rejections, by reason.", []string{"reason"}, nil)
	descThreshold = prometheus.NewDesc("palm_matcher_threshold", "Match threshold in force (distance).", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOpened
	ch <- descRejected
	ch <- descDecisions
	ch <- descGallery
	ch <- descRefused
	ch <- descThreshold
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	opened, rej := c.m.Opener.Counts()
	ch <- prometheus.MustNewConstMetric(descOpened, prometheus.CounterValue, float64(opened))
	for r, n := range rej {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n), protocol.Reason(r).String())
	}
	for d, n := range c.m.Decisions() {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), string(d))
	}
	ch <- prometheus.MustNewConstMetric(descGallery, prometheus.GaugeValue, float64(c.m.Size()))
	ch <- prometheus.MustNewConstMetric(descThreshold, prometheus.GaugeValue, c.m.Threshold())
	for r, n := range c.m.Refusals() {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(n), r)
	}
}
