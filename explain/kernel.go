package explain

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/minicluster/minicluster/proxy"
)

// kernelPath is what the kernel does with a new connection, read back from it: the
// rules met in order, the verdict, and the chance of each DNAT target ("ip:port").
type kernelPath struct {
	Kernel
	targets map[string]float64
}

// reader reads the proxy's rules back from the kernel, in the proxy's mode.
type reader struct {
	run      proxy.Runner
	mode     string
	instance string
	// iptables-save's chains, read once per explain: chain → rules ("-A" stripped).
	ipt map[string][]string
}

// service reads the path of dst ("ip . proto . port" in nftables' notation) or, with
// nodePort, of "proto . port" arriving at a node address.
func (r *reader) service(ip, proto string, port int32, nodePort bool) kernelPath {
	if r.mode == proxy.ModeNFTables {
		return r.nft(ip, proto, port, nodePort)
	}
	return r.iptables(ip, proto, port, nodePort)
}

var (
	reElements = regexp.MustCompile(`elements = \{ (.*?) \}`)
	rePick     = regexp.MustCompile(`^goto (?:masq-)?(nodeport-)?pick-(\d+)$`)
	reNumgen   = regexp.MustCompile(`numgen random mod (\d+) vmap \{ (.*) \}`)
	reGoto     = regexp.MustCompile(`\d+ : goto (\S+?),?$`)
	reNFTDNAT  = regexp.MustCompile(`dnat ip to (\S+)`)
)

// nftElement reads one element of map m, "" when it has none for key.
func (r *reader) nftElement(m, key string) string {
	out, err := r.run.Run("", "nft", "get", "element", "ip", proxy.Table(r.instance), m, "{ "+key+" }")
	if err != nil {
		return ""
	}
	if g := reElements.FindStringSubmatch(strings.Join(strings.Fields(out), " ")); g != nil {
		return g[1]
	}
	return ""
}

func (r *reader) nftChain(name string) []string {
	out, err := r.run.Run("", "nft", "list", "chain", "ip", proxy.Table(r.instance), name)
	if err != nil {
		return nil
	}
	var rules []string
	for line := range strings.Lines(out) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "table ") || strings.HasPrefix(t, "chain ") || t == "}" {
			continue
		}
		rules = append(rules, t)
	}
	return rules
}

func (r *reader) nft(ip, proto string, port int32, nodePort bool) kernelPath {
	kp := kernelPath{Kernel: Kernel{Mode: proxy.ModeNFTables, Verdict: "none"}, targets: map[string]float64{}}
	key, vmap, none, prefix := fmt.Sprintf("%s . %s . %d", ip, proto, port), "service-ips", "no-endpoint-services", ""
	if nodePort {
		key, vmap, none, prefix = fmt.Sprintf("%s . %d", proto, port), "service-nodeports", "no-endpoint-nodeports", "nodeport-"
	}
	el := r.nftElement(vmap, key)
	if el == "" {
		if el = r.nftElement(none, key); el != "" {
			kp.Rules = append(kp.Rules, "map "+none+": "+el)
			kp.Verdict = "drop"
			if strings.Contains(el, "reject") {
				kp.Verdict = "reject"
			}
		}
		return kp
	}
	kp.Rules = append(kp.Rules, "map "+vmap+": "+el)
	_, verdict, _ := strings.Cut(el, " : ")
	if g := rePick.FindStringSubmatch(verdict); g != nil {
		n, _ := strconv.Atoi(g[2])
		kp.Rules = append(kp.Rules, fmt.Sprintf("chain %spick-%d: numgen random mod %d → map %sendpoint-<n>", g[1], n, n, prefix))
		for i := range n {
			m := fmt.Sprintf("%sendpoint-%d", prefix, i)
			e := r.nftElement(m, key)
			kp.Rules = append(kp.Rules, "map "+m+": "+e)
			if _, to, ok := strings.Cut(e, " : "); ok {
				kp.targets[strings.Replace(to, " . ", ":", 1)] += 1 / float64(n)
			}
		}
		kp.Verdict = "dnat"
		return kp
	}
	// Session affinity: a chain of the service's own, then one per endpoint.
	chain := strings.TrimPrefix(verdict, "goto ")
	rules := r.nftChain(chain)
	for _, rule := range rules {
		kp.Rules = append(kp.Rules, "chain "+chain+": "+rule)
	}
	for _, rule := range rules {
		g := reNumgen.FindStringSubmatch(rule)
		if g == nil {
			continue
		}
		n, _ := strconv.Atoi(g[1])
		for _, pick := range strings.Split(g[2], ", ") {
			if m := reGoto.FindStringSubmatch(pick); m != nil {
				for _, er := range r.nftChain(m[1]) {
					if d := reNFTDNAT.FindStringSubmatch(er); d != nil {
						kp.Rules = append(kp.Rules, "chain "+m[1]+": "+er)
						kp.targets[d[1]] += 1 / float64(n)
					}
				}
			}
		}
		kp.Verdict = "dnat"
	}
	return kp
}

// iptChains parses iptables-save output into chains of rules.
func iptChains(out string, into map[string][]string) {
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-A "); ok {
			chain, rule, _ := strings.Cut(rest, " ")
			into[chain] = append(into[chain], rule)
		}
	}
}

var (
	reProbability = regexp.MustCompile(`--probability ([0-9.]+)`)
	reJump        = regexp.MustCompile(`-j (\S+)`)
	reDNAT        = regexp.MustCompile(`--to-destination (\S+)`)
)

func (r *reader) iptables(ip, proto string, port int32, nodePort bool) kernelPath {
	kp := kernelPath{Kernel: Kernel{Mode: proxy.ModeIPTables, Verdict: "none"}, targets: map[string]float64{}}
	if r.ipt == nil {
		r.ipt = map[string][]string{}
		for _, table := range []string{"nat", "filter"} {
			if out, err := r.run.Run("", "iptables-save", "-t", table); err == nil {
				iptChains(out, r.ipt)
			}
		}
	}
	p := strings.ToUpper(r.instance)
	match := func(rule string) bool {
		return strings.Contains(rule, fmt.Sprintf("-p %s ", proto)) && strings.Contains(rule, fmt.Sprintf("--dport %d ", port)) &&
			(nodePort || strings.Contains(rule, "-d "+ip+"/32 "))
	}
	chain, rejects := p+"-CLUSTER", p+"-NOENDPOINTS"
	if nodePort {
		chain, rejects = p+"-NODEPORTS", p+"-NODEPORT-REJECTS"
	}
	var svcChain string
	for _, rule := range r.ipt[chain] {
		if match(rule) {
			kp.Rules = append(kp.Rules, "-A "+chain+" "+rule)
			if g := reJump.FindStringSubmatch(rule); g != nil {
				svcChain = g[1]
			}
			break
		}
	}
	if svcChain == "" {
		for _, rule := range r.ipt[rejects] {
			if match(rule) {
				kp.Rules = append(kp.Rules, "-A "+rejects+" "+rule)
				kp.Verdict = "drop"
				if strings.Contains(rule, "REJECT") {
					kp.Verdict = "reject"
				}
				break
			}
		}
		return kp
	}
	remaining := 1.0
	for _, rule := range r.ipt[svcChain] {
		kp.Rules = append(kp.Rules, "-A "+svcChain+" "+rule)
		g := reJump.FindStringSubmatch(rule)
		if g == nil || !strings.Contains(g[1], "-SEP-") || strings.Contains(rule, "--rcheck") {
			continue // the mark for masquerade, or affinity's return to a known endpoint
		}
		chance := remaining
		if pr := reProbability.FindStringSubmatch(rule); pr != nil {
			f, _ := strconv.ParseFloat(pr[1], 64)
			chance = remaining * f
		}
		remaining -= chance
		for _, sep := range r.ipt[g[1]] {
			kp.Rules = append(kp.Rules, "-A "+g[1]+" "+sep)
			if d := reDNAT.FindStringSubmatch(sep); d != nil {
				kp.targets[d[1]] += chance
			}
		}
	}
	kp.Verdict = "dnat"
	return kp
}
