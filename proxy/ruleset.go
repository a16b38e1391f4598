package proxy

import (
	"maps"
	"slices"
)

// ruleset is a kernel ruleset as data, in the shape both renderers share: chains are
// rewritten whole when they change; collections (nftables maps and sets, iptables
// chains whose rules' order does not matter) change item by item; decls are
// collections made on demand (nftables).
//
// A service may claim a destination (address, protocol, port) another service claims
// too: an externalIP that is another service's ClusterIP, say. Items that route such a
// destination are tagged with it, and of all the services claiming it only the items of
// one are programmed: the lowest rank (a ClusterIP's own claim is 0, an externalIP's 1),
// then the first service key. Both renderers, incremental or full, so agree.
type ruleset struct {
	chains map[string][]string
	items  map[string]map[string]string // collection → key → value ("" for none)
	decls  map[string]string
	claims map[string]int               // destination → rank
	tags   map[string]map[string]string // collection → key → the destination it routes
}

func newRuleset() *ruleset {
	return &ruleset{chains: map[string][]string{}, items: map[string]map[string]string{}, decls: map[string]string{},
		claims: map[string]int{}, tags: map[string]map[string]string{}}
}

// claim adds an item that routes destination dst, claimed at rank.
func (s *ruleset) claim(dst string, rank int, c, k, v string) {
	if r, ok := s.claims[dst]; !ok || rank < r {
		s.claims[dst] = rank
	}
	s.add(c, k, v)
	if s.tags[c] == nil {
		s.tags[c] = map[string]string{}
	}
	s.tags[c][k] = dst
}

func (s *ruleset) add(c, k, v string) {
	if s.items[c] == nil {
		s.items[c] = map[string]string{}
	}
	s.items[c][k] = v
}

// merge adds o's contents to s.
func (s *ruleset) merge(o *ruleset) *ruleset {
	maps.Copy(s.chains, o.chains)
	maps.Copy(s.decls, o.decls)
	for c, kv := range o.items {
		if s.items[c] == nil {
			s.items[c] = map[string]string{}
		}
		maps.Copy(s.items[c], kv)
	}
	return s
}

type counted[V any] struct {
	v V
	n int
}

// aggregate is the union of the services' rulesets. It counts how many services need
// each chain, item and decl, so that a change to one service is worked out from that
// service alone: the cost of a sync follows the size of the change, not of the cluster.
type aggregate struct {
	frags  map[string]*ruleset
	chains map[string]*counted[[]string]
	items  map[string]map[string]*counted[string]
	decls  map[string]*counted[string]
	claims map[string]map[string]int // destination → service key → rank
	// sizes, kept as things come and go
	rules, elements int
}

func newAggregate() *aggregate {
	return &aggregate{frags: map[string]*ruleset{}, chains: map[string]*counted[[]string]{},
		items: map[string]map[string]*counted[string]{}, decls: map[string]*counted[string]{},
		claims: map[string]map[string]int{}}
}

// owner is the service whose items route dst: the lowest rank, then the first key.
func (a *aggregate) owner(dst string) string {
	best, bestRank := "", 0
	for svc, r := range a.claims[dst] {
		if best == "" || r < bestRank || r == bestRank && svc < best {
			best, bestRank = svc, r
		}
	}
	return best
}

// set replaces service key's ruleset with frag (nil: the service is gone), recording
// in before what left the union and in after what joined it. A thing that left and
// joined again is in both; the renderers then leave it alone if it is unchanged.
func (a *aggregate) set(key string, frag, before, after *ruleset) {
	// Destinations this service claims or claimed, and who routed them until now.
	was := map[string]string{}
	old := a.frags[key]
	for _, f := range []*ruleset{old, frag} {
		if f != nil {
			for dst := range f.claims {
				was[dst] = a.owner(dst)
			}
		}
	}
	if old != nil {
		for name := range old.chains {
			c := a.chains[name]
			if c.n--; c.n == 0 {
				delete(a.chains, name)
				before.chains[name] = c.v
				a.rules -= len(c.v)
			}
		}
		for name := range old.decls {
			c := a.decls[name]
			if c.n--; c.n == 0 {
				delete(a.decls, name)
				before.decls[name] = c.v
			}
		}
		for coll, kv := range old.items {
			for k := range kv {
				if dst, ok := old.tags[coll][k]; !ok || was[dst] == key {
					a.drop(coll, k, before)
				}
			}
		}
		for dst := range old.claims {
			if delete(a.claims[dst], key); len(a.claims[dst]) == 0 {
				delete(a.claims, dst)
			}
		}
		delete(a.frags, key)
	}
	if frag != nil {
		a.frags[key] = frag
		for dst, r := range frag.claims {
			if a.claims[dst] == nil {
				a.claims[dst] = map[string]int{}
			}
			a.claims[dst][key] = r
		}
	}
	// Another service that stops or starts routing a destination because of this one.
	for dst, w := range was {
		now := a.owner(dst)
		if now == w {
			continue
		}
		if w != key && w != "" {
			a.routes(w, dst, false, before, after)
		}
		if now != key && now != "" {
			a.routes(now, dst, true, before, after)
		}
	}
	if frag == nil {
		return
	}
	for name, rules := range frag.chains {
		if c := a.chains[name]; c != nil {
			c.n++
			continue
		}
		a.chains[name] = &counted[[]string]{v: rules, n: 1}
		after.chains[name] = rules
		a.rules += len(rules)
	}
	for name, d := range frag.decls {
		if c := a.decls[name]; c != nil {
			c.n++
			continue
		}
		a.decls[name] = &counted[string]{v: d, n: 1}
		after.decls[name] = d
	}
	for coll, kv := range frag.items {
		for k, v := range kv {
			if dst, ok := frag.tags[coll][k]; !ok || a.owner(dst) == key {
				a.put(coll, k, v, after)
			}
		}
	}
}

// routes puts service svc's items for dst into the union, or takes them out.
func (a *aggregate) routes(svc, dst string, on bool, before, after *ruleset) {
	f := a.frags[svc]
	for coll, kv := range f.tags {
		for k, d := range kv {
			switch {
			case d != dst:
			case on:
				a.put(coll, k, f.items[coll][k], after)
			default:
				a.drop(coll, k, before)
			}
		}
	}
}

// put counts one more need of item k of collection coll.
func (a *aggregate) put(coll, k, v string, after *ruleset) {
	if a.items[coll] == nil {
		a.items[coll] = map[string]*counted[string]{}
	}
	if c := a.items[coll][k]; c != nil {
		c.n++ // the same item from two services (a hairpin pair, say)
		return
	}
	a.items[coll][k] = &counted[string]{v: v, n: 1}
	after.add(coll, k, v)
	a.elements++
}

// drop counts one need less of item k of collection coll.
func (a *aggregate) drop(coll, k string, before *ruleset) {
	c := a.items[coll][k]
	if c.n--; c.n == 0 {
		delete(a.items[coll], k)
		before.add(coll, k, c.v)
		a.elements--
	}
}

// full is the whole union, on top of base.
func (a *aggregate) full(base *ruleset) *ruleset {
	s := newRuleset().merge(base)
	for name, c := range a.chains {
		s.chains[name] = c.v
	}
	for name, c := range a.decls {
		s.decls[name] = c.v
	}
	for coll, kv := range a.items {
		for k, c := range kv {
			s.add(coll, k, c.v)
		}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
