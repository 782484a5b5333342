// Command palm-matcher is the reference cloud matcher: it takes sealed
// captures from every terminal, enrols and identifies, and answers each
// device with a signed result. Run several instances to share the load:
// on Mosquitto (-transport mqtt, the default) through the shared
// subscription $share/matchers/palm/v1/+/capture with a gallery file
// shared on one host; on a NATS cluster (-transport nats) through a
// replicated JetStream work queue, with the gallery in a replicated
// key-value bucket (-store kv) shared across machines.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/version"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// options are the command line.
type options struct {
	brokers, matcherKeys                               list
	clientID, ca, cert, key, devices, resultKey        string
	commandKey, gallery, galleryKey, metrics, logLevel string
	deleteSubject, transport, store, bucket, baseTopic string
	far, threshold, fpir                               float64
	samples                                            int
	patience                                           time.Duration
}

func main() {
	var o options
	flag.Var(&o.brokers, "broker", "broker URL (repeatable): tcp://host:1883, ssl://host:8883; with -transport nats: nats://host:4222, tls://host:4222")
	flag.StringVar(&o.baseTopic, "base-topic", protocol.DefaultBaseTopic, "first levels of every device topic ({base}/{device}/capture …): the terminals' mqtt.base_topic")
	flag.StringVar(&o.transport, "transport", "mqtt", "mqtt: captures through an MQTT shared subscription (Mosquitto); nats: through the JetStream work queue of a NATS cluster")
	flag.DurationVar(&o.patience, "device-patience", matcher.DefaultPatience, "with -transport nats: how long terminals wait for a result once a capture is delivered (their mqtt.result_deadline); a capture queued longer is dropped undecided")
	flag.StringVar(&o.store, "store", "file", "where -gallery lives: file (an encrypted file shared on one host) or kv (replicated JetStream key-value buckets, with -transport nats)")
	flag.StringVar(&o.bucket, "gallery-bucket", matcher.DefaultKVBucket, "gallery bucket name with -store kv")
	flag.Var(&o.matcherKeys, "matcher-key", "matcher private key file (repeatable: several during a rotation)")
	flag.StringVar(&o.clientID, "client-id", "palm-matcher-1", "MQTT client id (unique per instance)")
	flag.StringVar(&o.ca, "ca", "", "CA bundle for TLS brokers")
	flag.StringVar(&o.cert, "cert", "", "client certificate (mutual TLS)")
	flag.StringVar(&o.key, "key", "", "client certificate key")
	flag.StringVar(&o.devices, "devices", "", "folder of device public keys named <device-id>.pub (required)")
	flag.StringVar(&o.resultKey, "result-key", "", "Ed25519 private key that signs results (required)")
	flag.StringVar(&o.commandKey, "command-key", "", "Ed25519 public key of the cloud's signed commands: enrol commands open the only enrolment sessions accepted (without it, enrolment is refused)")
	flag.Float64Var(&o.far, "far", matcher.DefaultFAR, "1:1 false-accept rate the threshold is derived for (from the built-in impostor model)")
	flag.Float64Var(&o.fpir, "fpir", 0, "false-positive identification rate to hold as the gallery grows: the threshold falls to the 1:1 FAR of fpir/N (0: off, the threshold stays put)")
	flag.Float64Var(&o.threshold, "threshold", 0, "match threshold (distance), overriding -far; 0: derive it from -far")
	flag.IntVar(&o.samples, "enrol-samples", matcher.DefaultEnrolSamples, "fewest samples an enrolment may have: enrol commands asking fewer are refused")
	flag.StringVar(&o.gallery, "gallery", "", "encrypted gallery file shared by every instance (optional with -store file; memory only otherwise)")
	flag.StringVar(&o.galleryKey, "gallery-key", "", "file with the gallery's 32-byte key as hex (required with -gallery and with -store kv)")
	flag.StringVar(&o.deleteSubject, "delete-subject", "", "remove this subject from -gallery (its template wiped from the file; running instances drop it at their next identification), or with -store kv from the bucket (purged; running instances drop it at once), and exit")
	flag.StringVar(&o.metrics, "metrics-listen", "127.0.0.1:9466", "Prometheus /metrics address (empty: off)")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn, error")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: palm-matcher -broker URL -matcher-key FILE -devices DIR -result-key FILE [flags]\n"+
			"       palm-matcher -delete-subject ID -gallery FILE -gallery-key FILE\n\nflags:\n")
		flag.PrintDefaults()
	}
	// -h prints the usage on stdout and exits 0; a bad flag exits 2.
	flag.CommandLine.Init(os.Args[0], flag.ContinueOnError)
	flag.CommandLine.SetOutput(os.Stderr)
	switch err := flag.CommandLine.Parse(os.Args[1:]); {
	case errors.Is(err, flag.ErrHelp):
		flag.CommandLine.SetOutput(os.Stdout)
		flag.Usage()
		return
	case err != nil:
		os.Exit(2) // the flag package has printed the error and the usage
	}
	if *showVersion {
		fmt.Println("palm-matcher", version.Version)
		return
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(os.Stderr, "palm-matcher: %v\n\n", err)
		flag.Usage()
		os.Exit(2)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "palm-matcher: -log-level %q: debug, info, warn or error\n", o.logLevel)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if err := run(log, o); err != nil {
		log.Error("palm-matcher failed", "err", err)
		os.Exit(1)
	}
}

// check refuses a command line that cannot work (usage errors, exit 2).
func (o options) check() error {
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: every value goes with a flag", flag.Arg(0))
	case o.deleteSubject != "":
		return nil
	case len(o.brokers) == 0 || len(o.matcherKeys) == 0 || o.devices == "" || o.resultKey == "":
		return errors.New("need -broker, -matcher-key, -devices and -result-key")
	case o.transport != "mqtt" && o.transport != "nats":
		return fmt.Errorf("-transport %q: mqtt or nats", o.transport)
	case protocol.ValidBaseTopic(o.baseTopic) != nil:
		return fmt.Errorf("-base-topic: %w", protocol.ValidBaseTopic(o.baseTopic))
	case o.patience <= 0 || o.patience > time.Minute:
		return fmt.Errorf("-device-patience %v: between 0 and 1m, as mqtt.result_deadline", o.patience)
	case o.store != "file" && o.store != "kv":
		return fmt.Errorf("-store %q: file or kv", o.store)
	case o.store == "kv" && o.transport != "nats":
		return errors.New("-store kv needs -transport nats")
	case o.store == "kv" && o.gallery != "":
		return errors.New("-gallery names a file: with -store kv the gallery is -gallery-bucket")
	}
	return nil
}

func run(log *slog.Logger, o options) error {
	if o.deleteSubject != "" {
		return deleteSubject(log, o)
	}
	keys := map[protocol.KeyID]*protocol.MatcherPrivateKey{}
	for _, p := range o.matcherKeys {
		k, err := keyfile.LoadMatcherPrivateKey(p)
		if err != nil {
			return err
		}
		keys[k.ID] = k
		log.Info("matcher key", "id", k.ID.String(), "suite", k.Suite.String())
	}
	rk, err := keyfile.LoadDevicePrivateKey(o.resultKey)
	if err != nil {
		return fmt.Errorf("-result-key: %w", err)
	}
	var ck ed25519.PublicKey
	if o.commandKey != "" {
		if ck, err = keyfile.LoadDevicePublicKey(o.commandKey); err != nil {
			return fmt.Errorf("-command-key: %w", err)
		}
	} else {
		log.Warn("no -command-key: enrolment samples will be refused")
	}
	reg := &matcher.DeviceDir{Dir: o.devices}
	m, err := matcher.New(matcher.Config{Threshold: o.threshold, FAR: o.far, FPIR: o.fpir, EnrolSamples: o.samples, ResultKey: rk, CommandKey: ck},
		&protocol.Opener{Keys: keys, Devices: reg.Lookup})
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if o.ca != "" {
		if tlsCfg, err = keyfile.LoadTLS(o.ca, o.cert, o.key); err != nil {
			return err
		}
	}
	var nc *nats.Conn
	if o.transport == "nats" {
		if nc, err = matcher.ConnectNATS(o.brokers, tlsCfg, o.clientID, log); err != nil {
			return err
		}
		defer nc.Close()
		if err := useCluster(m, nc, o); err != nil {
			return err
		}
	}
	if o.gallery != "" {
		gkey, err := matcher.ReadGalleryKey(o.galleryKey)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := m.UseStore(o.gallery, gkey); err != nil {
			return err
		}
		log.Info("gallery loaded", "entries", m.Size(), "took", time.Since(start).Round(time.Millisecond))
	}
	var sc matcher.ServeConfig
	sc.Brokers, sc.ClientID, sc.Logger, sc.TLS, sc.BaseTopic = o.brokers, o.clientID, log, tlsCfg, o.baseTopic
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "palm_matcher_decision_seconds",
		Help: "Time to open and decide one capture.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"decision"})
	sc.OnDecision = func(r protocol.Result, d time.Duration) {
		latency.WithLabelValues(string(r.Decision)).Observe(d.Seconds())
		log.Info("decision", "device", r.Device, "decision", string(r.Decision), "score", fmt.Sprintf("%.3f", r.Score))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.metrics != "" {
		pr := prometheus.NewRegistry()
		pr.MustRegister(latency, m.Collector())
		srv := &http.Server{Addr: o.metrics, Handler: promhttp.HandlerFor(pr, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("palm-matcher running", "transport", o.transport, "brokers", o.brokers, "client_id", o.clientID, "threshold", m.Threshold(), "far", o.far, "fpir", o.fpir)
	if nc != nil {
		return m.ServeNATS(ctx, nc, matcher.NATSConfig{BaseTopic: o.baseTopic, Patience: o.patience, Logger: log, OnDecision: sc.OnDecision})
	}
	return m.Serve(ctx, sc)
}

// useCluster shares the answers, and with -store kv the gallery, through
// the cluster's replicated buckets.
func useCluster(m *matcher.Matcher, nc *nats.Conn, o options) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answers, err := matcher.OpenKVAnswers(ctx, js, 0)
	if err != nil {
		return err
	}
	m.UseAnswers(answers)
	if o.store != "kv" {
		return nil
	}
	gkey, err := matcher.ReadGalleryKey(o.galleryKey)
	if err != nil {
		return err
	}
	s, err := matcher.OpenKVStore(ctx, js, gkey, matcher.KVConfig{Bucket: o.bucket})
	clear(gkey)
	if err != nil {
		return err
	}
	return m.Attach(s)
}

// deleteSubject honours a deletion request offline: the subject leaves the
// gallery file now, and every running instance's memory at its next
// identification.
func deleteSubject(log *slog.Logger, o options) error {
	gkey, err := matcher.ReadGalleryKey(o.galleryKey)
	if err != nil {
		return err
	}
	defer clear(gkey)
	var s matcher.Store
	where := o.gallery
	switch {
	case o.store == "kv":
		var tlsCfg *tls.Config
		if o.ca != "" {
			if tlsCfg, err = keyfile.LoadTLS(o.ca, o.cert, o.key); err != nil {
				return err
			}
		}
		nc, err := matcher.ConnectNATS(o.brokers, tlsCfg, o.clientID, log)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if s, err = matcher.OpenKVStore(ctx, js, gkey, matcher.KVConfig{Bucket: o.bucket}); err != nil {
			return err
		}
		where = "bucket " + o.bucket
	case o.gallery != "":
		if s, err = matcher.OpenFileStore(o.gallery, gkey); err != nil {
			return err
		}
	default:
		return errors.New("-delete-subject needs -gallery and -gallery-key, or -store kv, -broker and -gallery-key")
	}
	defer s.Close()
	if err := matcher.DeleteSubject(s, o.deleteSubject); err != nil {
		return fmt.Errorf("-delete-subject %s: %w", o.deleteSubject, err)
	}
	log.Info("subject deleted", "subject", o.deleteSubject, "gallery", where)
	return nil
}
