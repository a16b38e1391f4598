package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics carry kube-proxy's names, so dashboards and habits carry over.
type metrics struct {
	full, partial, all prometheus.Histogram
	programming        prometheus.Histogram
	rules, elements    prometheus.Gauge
	errors             prometheus.Counter
	lastSync           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, mode string) (*metrics, error) {
	labels := prometheus.Labels{"mode": mode}
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15) // 1 ms … 16 s
	m := &metrics{
		all: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubeproxy_sync_proxy_rules_duration_seconds",
			Help: "Time a sync of the proxy rules takes.", Buckets: buckets, ConstLabels: labels}),
		full: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubeproxy_sync_full_proxy_rules_duration_seconds",
			Help: "Time a full sync (the whole ruleset) takes.", Buckets: buckets, ConstLabels: labels}),
		partial: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubeproxy_sync_partial_proxy_rules_duration_seconds",
			Help: "Time a partial sync (a diff against the last one) takes.", Buckets: buckets, ConstLabels: labels}),
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubeproxy_network_programming_duration_seconds",
			Help:    "Time from a change (the EndpointSlice's last-change-trigger-time) to the proxy rules for it being applied. Kubernetes timestamps have second precision, so small values read up to 1 s high.",
			Buckets: buckets, ConstLabels: labels}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{Name: "minicluster_proxy_rules",
			Help: "Rules programmed by the last sync.", ConstLabels: labels}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{Name: "minicluster_proxy_set_elements",
			Help: "Map and set elements programmed by the last sync (nftables mode).", ConstLabels: labels}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_errors_total",
			Help: "Syncs that failed (and were retried).", ConstLabels: labels}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			Help: "When the rules were last synced.", ConstLabels: labels}),
	}
	for _, c := range []prometheus.Collector{m.all, m.full, m.partial, m.programming, m.rules, m.elements, m.errors, m.lastSync} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeSync(full bool, took time.Duration, rules, elements int) {
	m.all.Observe(took.Seconds())
	if full {
		m.full.Observe(took.Seconds())
	} else {
		m.partial.Observe(took.Seconds())
	}
	m.rules.Set(float64(rules))
	m.elements.Set(float64(elements))
	m.lastSync.SetToCurrentTime()
}
