package dns

import (
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// answerCache keeps the packed answers to queries for the cluster's names, by the
// query's bytes after its ID (name as spelled, type, class, flags, EDNS), for one
// generation of the index: a repeated query is answered by copying bytes, not by
// decoding, looking up and encoding again. The generation is read before an answer is
// computed and the answer kept under it, so an answer that may predate a change is
// never served after the change was seen. Each UDP reader has its own (no lock).
type answerCache struct {
	gen uint64
	// entries by the query's bytes after its ID: [0] answered without forwarding,
	// [1] with (the RA flag differs).
	entries [2]map[string]cachedAnswer
}

type cachedAnswer struct {
	packed    []byte
	responses prometheus.Counter // coredns_dns_responses_total{type,rcode} of this answer
}

// maxCachedAnswers bounds a cache; when full it starts over.
const maxCachedAnswers = 1 << 15

func newAnswerCache() *answerCache {
	return &answerCache{entries: [2]map[string]cachedAnswer{{}, {}}}
}

func which(recursive bool) int {
	if recursive {
		return 1
	}
	return 0
}

func (c *answerCache) get(gen uint64, recursive bool, query []byte) (cachedAnswer, bool) {
	if gen != c.gen {
		clear(c.entries[0])
		clear(c.entries[1])
		c.gen = gen
		return cachedAnswer{}, false
	}
	if len(query) < 12 {
		return cachedAnswer{}, false
	}
	a, ok := c.entries[which(recursive)][string(query[2:])] // no allocation for the lookup
	return a, ok
}

func (c *answerCache) put(gen uint64, recursive bool, query, packed []byte, responses prometheus.Counter) {
	if gen != c.gen || len(query) < 12 || len(packed) < 12 {
		return
	}
	m := c.entries[which(recursive)]
	if len(m) >= maxCachedAnswers {
		clear(m)
	}
	m[string(query[2:])] = cachedAnswer{packed: append([]byte(nil), packed...), responses: responses}
}

// cacheable says whether resp depends only on the index: an authoritative answer from
// it (not one before it synced, nor one that asked an upstream for an ExternalName's
// target outside the zone).
func (a *Answerer) cacheable(resp *mdns.Msg) bool {
	if resp == nil || !resp.Authoritative || resp.Rcode != mdns.RcodeSuccess && resp.Rcode != mdns.RcodeNameError {
		return false
	}
	for _, rr := range resp.Answer {
		if c, ok := rr.(*mdns.CNAME); ok && !a.inZone(strings.ToLower(c.Target)) {
			return false
		}
	}
	return true
}
