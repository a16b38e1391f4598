package proxy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The packet tracers walk a virtual packet through a rendered ruleset, the way the
// kernel would, and fail the test on any rule they do not understand. Random choices
// branch, so a trace returns every possible outcome.

// packet is a new connection's first packet. Output means the node sent it; otherwise
// it arrives from a pod on the bridge.
type packet struct {
	src, dst, proto string
	port            int
	output          bool
}

// tracer knows the node's own addresses and who is in which affinity set.
type tracer struct {
	t        *testing.T
	local    []string
	affinity map[string][]string // set (nft) or recent list (iptables) → client addresses
}

func (tr *tracer) isLocal(ip string) bool { return slices.Contains(tr.local, ip) }

// state is a packet on its way: its current destination, mark, and whether it was
// masqueraded.
type state struct {
	dst     string
	port    int
	mark    uint32
	dnat    bool
	masq    bool
	verdict string // "", accept, drop, reject
	done    bool
}

func (s state) outcome() string {
	v := s.verdict
	if v == "" || v == "accept" {
		v = "accept"
		if s.dnat {
			v = fmt.Sprintf("dnat %s:%d", s.dst, s.port)
		}
	}
	return v
}

func outcomes(states []state) string {
	var out []string
	for _, s := range states {
		o := s.outcome()
		if s.masq {
			o += " masq"
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " | ")
}

// ---- nftables ----

type nftTracer struct {
	tracer
	chains map[string][]string
	elems  map[string]map[string]string
}

var nftCmd = regexp.MustCompile(`^(add|delete|flush) (chain|rule|element|set|map) ip \S+ (\S+) ?(.*)$`)

func parseNFT(t *testing.T, script string, tr tracer) *nftTracer {
	n := &nftTracer{tracer: tr, chains: map[string][]string{}, elems: map[string]map[string]string{}}
	lines := strings.Split(script, "\n")
	chain := ""
	for _, line := range lines {
		l := strings.TrimSpace(line)
		switch {
		case l == "" || strings.HasPrefix(l, "table ip") || strings.HasPrefix(l, "delete table") || l == "}" ||
			strings.HasPrefix(l, "type ") || strings.HasPrefix(l, "typeof "):
		case strings.HasPrefix(l, "map ") || strings.HasPrefix(l, "set "):
			n.elems[strings.Fields(l)[1]] = map[string]string{}
		case strings.HasPrefix(l, "chain "):
			chain = strings.Fields(l)[1]
			n.chains[chain] = nil
		case nftCmd.MatchString(l):
			m := nftCmd.FindStringSubmatch(l)
			switch m[1] + " " + m[2] {
			case "add chain", "flush chain":
				n.chains[m[3]] = nil
			case "add rule":
				n.chains[m[3]] = append(n.chains[m[3]], m[4])
			case "add set", "add map":
				n.elems[m[3]] = map[string]string{}
			case "add element", "delete element":
				body := strings.TrimSuffix(strings.TrimPrefix(m[4], "{ "), " }")
				for e := range strings.SplitSeq(body, ", ") {
					k, v, _ := strings.Cut(e, " : ")
					if m[1] == "add" {
						n.elems[m[3]][k] = v
					} else {
						delete(n.elems[m[3]], k)
					}
				}
			case "delete chain":
				delete(n.chains, m[3])
			case "delete set", "delete map":
				delete(n.elems, m[3])
			default:
				t.Fatalf("tracer: command not understood: %s", l)
			}
		case chain != "":
			n.chains[chain] = append(n.chains[chain], l)
		default:
			t.Fatalf("tracer: line not understood: %s", l)
		}
	}
	for set, clients := range tr.affinity {
		if n.elems[set] == nil {
			t.Fatalf("tracer: no affinity set %s", set)
		}
		for _, c := range clients {
			n.elems[set][c] = ""
		}
	}
	return n
}

var (
	reVmapLookup  = regexp.MustCompile(`^ip daddr \. meta l4proto \. th dport vmap @(\S+)$`)
	reNodePorts   = regexp.MustCompile(`^ip daddr != 127\.0\.0\.0/8 fib daddr type local meta l4proto \. th dport vmap @(\S+)$`)
	reGoto        = regexp.MustCompile(`^(jump|goto) (\S+)$`)
	reDNATMap     = regexp.MustCompile(`^meta l4proto \{ tcp, udp, sctp \} dnat ip to (ip daddr \. )?meta l4proto \. th dport map @(\S+)$`)
	reMarkGoto    = regexp.MustCompile(`^meta mark set meta mark \| (0x[0-9a-f]+)(?: goto (\S+))?$`)
	reMarkMasq    = regexp.MustCompile(`^meta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+) masquerade$`)
	reSetGoto     = regexp.MustCompile(`^ip (saddr|daddr) @(\S+) goto (\S+)$`)
	reCIDRDrop    = regexp.MustCompile(`^ip daddr (\S+/\d+) drop$`)
	reNumgenVmap  = regexp.MustCompile(`^numgen random mod (\d+) vmap \{ (.*) \}$`)
	reUpdate      = regexp.MustCompile(`^update @(\S+) \{ ip saddr \}$`)
	reDNAT        = regexp.MustCompile(`^meta l4proto (\w+) dnat ip to (\S+):(\d+)$`)
	reRejectProto = regexp.MustCompile(`^meta l4proto (\w+) reject with tcp reset$`)
)

func parseMark(s string) uint32 {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return uint32(v)
}

// verdict applies a map value (goto X, drop) to s.
func (n *nftTracer) verdict(p packet, s state, v string) []state {
	if v == "drop" {
		s.verdict, s.done = "drop", true
		return []state{s}
	}
	if m := reGoto.FindStringSubmatch(v); m != nil {
		return n.branch(p, s, m[1], m[2], nil)
	}
	n.t.Fatalf("tracer: verdict not understood: %s", v)
	return nil
}

// branch runs chain for jump or goto, then continues with rest (for jump) where the
// called chain fell through.
func (n *nftTracer) branch(p packet, s state, kind, chain string, rest []string) []state {
	if _, ok := n.chains[chain]; !ok {
		n.t.Fatalf("tracer: no chain %s", chain)
	}
	var out []state
	for _, r := range n.run(p, s, n.chains[chain]) {
		if r.done || kind == "goto" {
			out = append(out, r)
		} else {
			out = append(out, n.run(p, r, rest)...)
		}
	}
	return out
}

// run evaluates rules in order; a goto's fall-through returns to the caller.
func (n *nftTracer) run(p packet, s state, rules []string) []state {
	for i, r := range rules {
		rest := rules[i+1:]
		key3 := fmt.Sprintf("%s . %s . %d", s.dst, p.proto, s.port)
		key2 := fmt.Sprintf("%s . %d", p.proto, s.port)
		switch {
		case r == "ct state new jump filter-checks":
			return n.branch(p, s, "jump", "filter-checks", rest)
		case reVmapLookup.MatchString(r):
			if v, ok := n.elems[reVmapLookup.FindStringSubmatch(r)[1]][key3]; ok {
				return n.verdict(p, s, v)
			}
		case reNodePorts.MatchString(r):
			if v, ok := n.elems[reNodePorts.FindStringSubmatch(r)[1]][key2]; ok && n.isLocal(s.dst) && !strings.HasPrefix(s.dst, "127.") {
				return n.verdict(p, s, v)
			}
		case reGoto.MatchString(r):
			m := reGoto.FindStringSubmatch(r)
			return n.branch(p, s, m[1], m[2], rest)
		case reDNATMap.MatchString(r):
			m := reDNATMap.FindStringSubmatch(r)
			key := key2
			if m[1] != "" {
				key = key3
			}
			target, ok := n.elems[m[2]][key]
			if !ok {
				n.t.Fatalf("tracer: %s has no element for %s, yet numgen can pick it", m[2], key)
			}
			ip, port, _ := strings.Cut(target, " . ")
			s.dst, s.port, s.dnat, s.done, s.verdict = ip, atoi(port), true, true, "accept"
			return []state{s}
		case reMarkGoto.MatchString(r):
			m := reMarkGoto.FindStringSubmatch(r)
			s.mark |= parseMark(m[1])
			if m[2] != "" {
				return n.branch(p, s, "goto", m[2], nil)
			}
		case reSetGoto.MatchString(r):
			m := reSetGoto.FindStringSubmatch(r)
			addr := map[string]string{"saddr": p.src, "daddr": s.dst}[m[1]]
			if _, ok := n.elems[m[2]][addr]; ok {
				return n.branch(p, s, "goto", m[3], nil)
			}
		case reCIDRDrop.MatchString(r):
			if netip.MustParsePrefix(reCIDRDrop.FindStringSubmatch(r)[1]).Contains(netip.MustParseAddr(s.dst)) {
				s.verdict, s.done = "drop", true
				return []state{s}
			}
		case reNumgenVmap.MatchString(r):
			var out []state
			for e := range strings.SplitSeq(reNumgenVmap.FindStringSubmatch(r)[2], ", ") {
				_, v, _ := strings.Cut(e, " : ")
				out = append(out, n.verdict(p, s, v)...)
			}
			return out
		case reUpdate.MatchString(r):
			if n.elems[reUpdate.FindStringSubmatch(r)[1]] == nil {
				n.t.Fatalf("tracer: rule updates a missing set: %s", r)
			}
		case reDNAT.MatchString(r):
			m := reDNAT.FindStringSubmatch(r)
			if m[1] == p.proto {
				s.dst, s.port, s.dnat, s.done, s.verdict = m[2], atoi(m[3]), true, true, "accept"
				return []state{s}
			}
		case reRejectProto.MatchString(r):
			if reRejectProto.FindStringSubmatch(r)[1] == p.proto {
				s.verdict, s.done = "reject", true
				return []state{s}
			}
		case r == "reject":
			s.verdict, s.done = "reject", true
			return []state{s}
		case reMarkMasq.MatchString(r):
			m := reMarkMasq.FindStringSubmatch(r)
			if s.mark&parseMark(m[1]) == parseMark(m[2]) {
				s.masq, s.done = true, true
				return []state{s}
			}
		case r == "ct status dnat ip saddr . ip daddr @hairpin masquerade":
			if _, ok := n.elems["hairpin"][p.src+" . "+s.dst]; ok && s.dnat {
				s.masq, s.done = true, true
				return []state{s}
			}
		case strings.HasPrefix(r, "type ") || strings.HasPrefix(r, "policy "):
		default:
			n.t.Fatalf("tracer: rule not understood: %q", r)
		}
	}
	return []state{s}
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return v
}

// trace runs the nat hook, then the filter hook the packet then reaches, then decides
// masquerade as postrouting would.
func (n *nftTracer) trace(p packet) string {
	s0 := state{dst: p.dst, port: p.port}
	nat := "nat-prerouting"
	if p.output {
		nat = "nat-output"
	}
	var final []state
	for _, s := range n.branch(p, s0, "jump", nat, nil) {
		if s.verdict == "drop" || s.verdict == "reject" {
			final = append(final, s)
			continue
		}
		s.done, s.verdict = false, ""
		filter := "filter-forward"
		switch {
		case p.output:
			filter = "filter-output"
		case n.isLocal(s.dst):
			filter = "filter-input"
		}
		for _, f := range n.branch(p, s, "jump", filter, nil) {
			if f.verdict == "" {
				f = n.branch(p, f, "jump", "nat-postrouting", nil)[0]
			}
			final = append(final, f)
		}
	}
	return outcomes(final)
}

// ---- iptables ----

type iptTracer struct {
	tracer
	chains   map[string][][]string // "table/chain" → rules as arguments
	instance string
}

func parseIPT(t *testing.T, instance, script string, tr tracer) *iptTracer {
	it := &iptTracer{tracer: tr, chains: map[string][][]string{}, instance: instance}
	table := ""
	for line := range strings.SplitSeq(script, "\n") {
		switch {
		case line == "" || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			it.chains[table+"/"+strings.Fields(line[1:])[0]] = nil
		case strings.HasPrefix(line, "-A "):
			args := splitArgs(t, line)
			if _, ok := it.chains[table+"/"+args[1]]; !ok {
				t.Fatalf("tracer: -A to a missing chain: %s", line)
			}
			it.chains[table+"/"+args[1]] = append(it.chains[table+"/"+args[1]], args[2:])
		case strings.HasPrefix(line, "-D "):
			args := splitArgs(t, line)
			k := table + "/" + args[1]
			i := slices.IndexFunc(it.chains[k], func(r []string) bool { return slices.Equal(r, args[2:]) })
			if i < 0 {
				t.Fatalf("tracer: -D of a rule that is not there (iptables-restore would fail): %s", line)
			}
			it.chains[k] = slices.Delete(it.chains[k], i, i+1)
		case strings.HasPrefix(line, "-X "):
			k := table + "/" + strings.TrimPrefix(line, "-X ")
			if len(it.chains[k]) > 0 {
				t.Fatalf("tracer: -X of a chain with rules: %s", line)
			}
			delete(it.chains, k)
		default:
			t.Fatalf("tracer: restore line not understood: %s", line)
		}
	}
	// The built-in chains hold only the jumps into ours.
	for _, j := range iptJumps(instance) {
		k := j[1] + "/" + j[2]
		it.chains[k] = append(it.chains[k], j[3:])
	}
	return it
}

func splitArgs(t *testing.T, line string) []string {
	var out []string
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("tracer: bad quoting in %q", line)
			}
			s, _ := strconv.Unquote(q)
			out, line = append(out, s), line[len(q):]
			continue
		}
		f, rest, _ := strings.Cut(line, " ")
		if f != "" {
			out = append(out, f)
		}
		line = rest
	}
	return out
}

// rule evaluates one rule: whether it matches (a statistic match branches both ways).
func (it *iptTracer) run(p packet, s state, table, chain string) []state {
	rules, ok := it.chains[table+"/"+chain]
	if !ok {
		it.t.Fatalf("tracer: no chain %s/%s", table, chain)
	}
	return it.runRules(p, s, table, rules)
}

func (it *iptTracer) runRules(p packet, s state, table string, rules [][]string) []state {
	for i, r := range rules {
		matches, random := true, false
		target := []string{}
		for a := 0; a < len(r) && matches; a++ {
			neg := r[a] == "!"
			if neg {
				a++
			}
			arg := func() string { a++; return r[a] }
			switch r[a] {
			case "-m":
				switch arg() {
				case "comment", "tcp", "udp", "sctp", "addrtype", "statistic", "recent", "mark", "conntrack":
				default:
					it.t.Fatalf("tracer: match not understood in %q", r)
				}
			case "--comment", "--mode", "--mask", "--seconds":
				arg()
			case "--reap", "--rsource", "--set":
			case "-d", "-s":
				addr := map[string]string{"-d": s.dst, "-s": p.src}[r[a]]
				pfx := netip.MustParsePrefix(arg())
				matches = pfx.Contains(netip.MustParseAddr(addr)) != neg
			case "-p":
				matches = arg() == p.proto
			case "--dport":
				matches = atoi(arg()) == s.port
			case "--dst-type":
				if arg() != "LOCAL" {
					it.t.Fatalf("tracer: addrtype not understood in %q", r)
				}
				matches = it.isLocal(s.dst)
			case "--probability":
				arg()
				random = true
			case "--name":
				name := arg()
				if slices.Contains(r, "--rcheck") {
					matches = slices.Contains(it.affinity[name], p.src)
				}
			case "--rcheck":
			case "--mark":
				m, mask, _ := strings.Cut(arg(), "/")
				matches = s.mark&parseMark(mask) == parseMark(m)
			case "--ctstate":
				arg() // every traced packet is new
			case "-j":
				target = r[a+1:]
				a = len(r)
			default:
				it.t.Fatalf("tracer: argument %q not understood in %q", r[a], r)
			}
		}
		rest := rules[i+1:]
		if !matches {
			continue
		}
		var out []state
		taken := it.target(p, s, table, target, rest)
		out = append(out, taken...)
		if random {
			out = append(out, it.runRules(p, s, table, rest)...)
		}
		return out
	}
	return []state{s}
}

func (it *iptTracer) target(p packet, s state, table string, target []string, rest [][]string) []state {
	switch target[0] {
	case "RETURN":
		return []state{s}
	case "DROP", "REJECT":
		s.verdict, s.done = strings.ToLower(target[0]), true
		return []state{s}
	case "MASQUERADE":
		s.masq, s.done = true, true
		return []state{s}
	case "MARK":
		if len(target) != 3 || target[1] != "--or-mark" {
			it.t.Fatalf("tracer: MARK not understood: %q", target)
		}
		s.mark |= parseMark(target[2])
		return it.runRules(p, s, table, rest)
	case "DNAT":
		ip, port, _ := strings.Cut(target[2], ":")
		s.dst, s.port, s.dnat, s.done, s.verdict = ip, atoi(port), true, true, "accept"
		return []state{s}
	}
	if !strings.HasPrefix(target[0], iptPrefix(it.instance)+"-") || len(target) != 1 {
		it.t.Fatalf("tracer: target not understood: %q", target)
	}
	var out []state
	for _, r := range it.run(p, s, table, target[0]) {
		if r.done {
			out = append(out, r)
		} else {
			out = append(out, it.runRules(p, r, table, rest)...)
		}
	}
	return out
}

func (it *iptTracer) trace(p packet) string {
	s0 := state{dst: p.dst, port: p.port}
	nat := "PREROUTING"
	if p.output {
		nat = "OUTPUT"
	}
	var final []state
	for _, s := range it.run(p, s0, "nat", nat) {
		s.done, s.verdict = false, ""
		filter := "FORWARD"
		switch {
		case p.output:
			filter = "OUTPUT"
		case it.isLocal(s.dst):
			filter = "INPUT"
		}
		for _, f := range it.run(p, s, "filter", filter) {
			if f.verdict == "" {
				f = it.run(p, f, "nat", "POSTROUTING")[0]
			}
			final = append(final, f)
		}
	}
	return outcomes(final)
}
