// Command palm-matcher is the reference cloud matcher: it takes sealed
// captures from every terminal through the shared subscription
// $share/matchers/palm/v1/+/capture, enrols and identifies, and answers each
// device with a signed result. Run several instances to share the load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/uplink"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var brokers, matcherKeys list
	flag.Var(&brokers, "broker", "broker URL (repeatable): tcp://host:1883, ssl://host:8883")
	flag.Var(&matcherKeys, "matcher-key", "matcher private key file (repeatable: several during a rotation)")
	clientID := flag.String("client-id", "palm-matcher-1", "MQTT client id (unique per instance)")
	ca := flag.String("ca", "", "CA bundle for TLS brokers")
	cert := flag.String("cert", "", "client certificate (mutual TLS)")
	key := flag.String("key", "", "client certificate key")
	devices := flag.String("devices", "", "folder of device public keys named <device-id>.pub (required)")
	resultKey := flag.String("result-key", "", "Ed25519 private key that signs results (required)")
	far := flag.Float64("far", matcher.DefaultFAR, "1:1 false-accept rate the threshold is derived for (from the built-in impostor model)")
	threshold := flag.Float64("threshold", 0, "match threshold (distance), overriding -far; 0: derive it from -far")
	samples := flag.Int("enrol-samples", 3, "samples per enrolment")
	gallery := flag.String("gallery", "", "encrypted gallery file shared by every instance (optional; memory only otherwise)")
	galleryKey := flag.String("gallery-key", "", "file with the gallery's 32-byte key as hex (required with -gallery)")
	metrics := flag.String("metrics-listen", "127.0.0.1:9466", "Prometheus /metrics address (empty: off)")
	level := flag.String("log-level", "info", "debug, info, warn, error")
	flag.Parse()
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(*level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if err := run(log, brokers, matcherKeys, *clientID, *ca, *cert, *key, *devices, *resultKey, *threshold, *far, *samples, *gallery, *galleryKey, *metrics); err != nil {
		log.Error("palm-matcher failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, brokers, mkeys []string, clientID, ca, cert, key, devices, resultKey string,
	threshold, far float64, samples int, galleryPath, galleryKey, metricsAddr string) error {
	if len(brokers) == 0 || len(mkeys) == 0 || devices == "" || resultKey == "" {
		return errors.New("need -broker, -matcher-key, -devices and -result-key")
	}
	keys := map[template.KeyID]*template.MatcherPrivateKey{}
	for _, p := range mkeys {
		k, err := keyfile.LoadMatcherPrivateKey(p)
		if err != nil {
			return err
		}
		keys[k.ID] = k
		log.Info("matcher key", "id", k.ID.String(), "suite", k.Suite.String())
	}
	rk, err := keyfile.LoadDevicePrivateKey(resultKey)
	if err != nil {
		return fmt.Errorf("-result-key: %w", err)
	}
	reg := &matcher.DeviceDir{Dir: devices}
	m, err := matcher.New(matcher.Config{Threshold: threshold, FAR: far, EnrolSamples: samples, ResultKey: rk},
		&template.Opener{Keys: keys, Devices: reg.Lookup})
	if err != nil {
		return err
	}
	var gkey []byte
	if galleryPath != "" {
		if gkey, err = matcher.ReadGalleryKey(galleryKey); err != nil {
			return err
		}
		if err := m.UseStore(galleryPath, gkey); err != nil {
			return err
		}
		log.Info("gallery loaded", "entries", m.Size())
	}
	var sc matcher.ServeConfig
	sc.Brokers, sc.ClientID, sc.Logger = brokers, clientID, log
	if ca != "" {
		if sc.TLS, err = uplink.LoadTLS(ca, cert, key); err != nil {
			return err
		}
	}
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "palm_matcher_decision_seconds",
		Help: "Time to open and decide one capture.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"decision"})
	sc.OnDecision = func(r uplink.Result, d time.Duration) {
		latency.WithLabelValues(string(r.Decision)).Observe(d.Seconds())
		log.Info("decision", "device", r.Device, "decision", string(r.Decision), "score", fmt.Sprintf("%.3f", r.Score))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if metricsAddr != "" {
		pr := prometheus.NewRegistry()
		pr.MustRegister(latency, collector{m})
		srv := &http.Server{Addr: metricsAddr, Handler: promhttp.HandlerFor(pr, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("palm-matcher running", "brokers", brokers, "client_id", clientID, "threshold", m.Threshold(), "far", far)
	return m.Serve(ctx, sc)
}

type collector struct{ m *matcher.Matcher }

var (
	descOpened    = prometheus.NewDesc("palm_matcher_envelopes_opened_total", "Envelopes opened.", nil, nil)
	descRejected  = prometheus.NewDesc("palm_matcher_envelopes_rejected_total", "Envelopes rejected, by reason.", []string{"reason"}, nil)
	descDecisions = prometheus.NewDesc("palm_matcher_decisions_total", "Decisions by kind.", []string{"decision"}, nil)
	descGallery   = prometheus.NewDesc("palm_matcher_gallery_entries", "Enrolled subjects.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOpened
	ch <- descRejected
	ch <- descDecisions
	ch <- descGallery
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	opened, rej := c.m.Opener.Counts()
	ch <- prometheus.MustNewConstMetric(descOpened, prometheus.CounterValue, float64(opened))
	for r, n := range rej {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n), template.Reason(r).String())
	}
	for d, n := range c.m.Decisions() {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), string(d))
	}
	ch <- prometheus.MustNewConstMetric(descGallery, prometheus.GaugeValue, float64(c.m.Size()))
}
