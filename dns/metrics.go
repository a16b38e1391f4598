package dns

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics carry CoreDNS's names, so dashboards and habits carry over.
type metrics struct {
	requests               *prometheus.CounterVec
	duration               prometheus.Histogram
	cacheHits, cacheMisses prometheus.Counter
	forwardErrors          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coredns_dns_responses_total",
			Help: "Responses by query type and rcode."}, []string{"type", "rcode"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coredns_dns_request_duration_seconds",
			Help: "Time to answer a query.", Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16)}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "coredns_cache_hits_total",
			Help: "Forwarded names answered from the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "coredns_cache_misses_total",
			Help: "Forwarded names not in the cache."}),
		forwardErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "coredns_forward_responses_errors_total",
			Help: "Upstream exchanges that failed."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.cacheHits, m.cacheMisses, m.forwardErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(qtype, rcode string, took time.Duration) {
	m.requests.WithLabelValues(qtype, rcode).Inc()
	m.duration.Observe(took.Seconds())
}
