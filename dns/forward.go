package dns

import (
	"errors"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// forwarder sends names outside the cluster zone to the upstreams in turn, retrying
// over TCP when an answer comes back truncated, with a bounded cache that honours TTLs
// (positive and negative, RFC 2308).
type forwarder struct {
	upstreams []string
	udp, tcp  *mdns.Client
	metrics   *metrics

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	msg     *mdns.Msg
	stored  time.Time
	expires time.Time
}

const (
	cacheSize      = 10000
	maxPositiveTTL = time.Hour
	maxNegativeTTL = 5 * time.Minute
)

func newForwarder(upstreams []string, m *metrics) *forwarder {
	return &forwarder{upstreams: upstreams, metrics: m, cache: map[string]cached{},
		udp: &mdns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 4096},
		tcp: &mdns.Client{Net: "tcp", Timeout: 2 * time.Second}}
}

func cacheKey(q mdns.Question) string {
	return strings.ToLower(q.Name) + "/" + mdns.TypeToString[q.Qtype] + "/" + mdns.ClassToString[q.Qclass]
}

func (f *forwarder) exchange(req *mdns.Msg) (*mdns.Msg, error) {
	q := req.Question[0]
	key := cacheKey(q)
	now := time.Now()
	f.mu.Lock()
	c, ok := f.cache[key]
	if ok && now.After(c.expires) {
		delete(f.cache, key)
		ok = false
	}
	f.mu.Unlock()
	if ok {
		f.metrics.cacheHits.Inc()
		r := c.msg.Copy()
		r.Id = req.Id
		r.Question = req.Question // keep the asker's spelling
		age := uint32(now.Sub(c.stored) / time.Second)
		for _, sec := range [][]mdns.RR{r.Answer, r.Ns, r.Extra} {
			for _, rr := range sec {
				if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
					h.Ttl -= min(age, h.Ttl)
				}
			}
		}
		return r, nil
	}
	f.metrics.cacheMisses.Inc()
	out := new(mdns.Msg)
	out.SetQuestion(q.Name, q.Qtype)
	out.Question[0].Qclass = q.Qclass
	out.RecursionDesired = true
	out.SetEdns0(4096, false)
	var errs []error
	for _, up := range f.upstreams {
		r, _, err := f.udp.Exchange(out, up)
		if err == nil && r.Truncated {
			r, _, err = f.tcp.Exchange(out, up)
		}
		if err != nil {
			f.metrics.forwardErrors.Inc()
			errs = append(errs, err)
			continue
		}
		f.store(key, r, now)
		r.Id = req.Id
		return r, nil
	}
	return nil, errors.Join(errs...)
}

// store caches r for the smallest TTL of its answer, or for a negative answer the SOA's
// minimum (RFC 2308); failures are not cached.
func (f *forwarder) store(key string, r *mdns.Msg, now time.Time) {
	var ttl time.Duration
	switch {
	case r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0:
		ttl = maxPositiveTTL
		for _, rr := range r.Answer {
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	case r.Rcode == mdns.RcodeSuccess || r.Rcode == mdns.RcodeNameError:
		for _, rr := range r.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				ttl = min(maxNegativeTTL, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second)
			}
		}
	}
	if ttl <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= cacheSize {
		for k := range f.cache { // evict one at random
			delete(f.cache, k)
			break
		}
	}
	f.cache[key] = cached{msg: r.Copy(), stored: now, expires: now.Add(ttl)}
}
