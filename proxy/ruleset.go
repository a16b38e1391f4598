package proxy

import (
	"maps"
	"slices"
)

// ruleset is a kernel ruleset as data, in the shape both renderers share: chains are
// rewritten whole when they change; collections (nftables maps and sets, iptables
// chains whose rules' order does not matter) change item by item; decls are
// collections made on demand (nftables).
type ruleset struct {
	chains map[string][]string
	items  map[string]map[string]string // collection → key → value ("" for none)
	decls  map[string]string
}

func newRuleset() *ruleset {
	return &ruleset{chains: map[string][]string{}, items: map[string]map[string]string{}, decls: map[string]string{}}
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
	// sizes, kept as things come and go
	rules, elements int
}

func newAggregate() *aggregate {
	return &aggregate{frags: map[string]*ruleset{}, chains: map[string]*counted[[]string]{},
		items: map[string]map[string]*counted[string]{}, decls: map[string]*counted[string]{}}
}

// set replaces service key's ruleset with frag (nil: the service is gone), recording
// in before what left the union and in after what joined it. A thing that left and
// joined again is in both; the renderers then leave it alone if it is unchanged.
func (a *aggregate) set(key string, frag, before, after *ruleset) {
	if old := a.frags[key]; old != nil {
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
				c := a.items[coll][k]
				if c.n--; c.n == 0 {
					delete(a.items[coll], k)
					before.add(coll, k, c.v)
					a.elements--
				}
			}
		}
		delete(a.frags, key)
	}
	if frag == nil {
		return
	}
	a.frags[key] = frag
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
		if a.items[coll] == nil {
			a.items[coll] = map[string]*counted[string]{}
		}
		for k, v := range kv {
			if c := a.items[coll][k]; c != nil {
				c.n++ // two services claiming one key (an externalIP, say): the first keeps it
				continue
			}
			a.items[coll][k] = &counted[string]{v: v, n: 1}
			after.add(coll, k, v)
			a.elements++
		}
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
