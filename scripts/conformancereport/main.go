// Command conformancereport turns the JUnit report of an e2e run (scripts/conformance.sh)
// into docs/conformance.md: per section, every spec that ran with its result, and for
// each failure its first failure line and, from the reasons file, why it fails here.
//
//	conformancereport -junit DIR/junit.xml -reasons scripts/conformance-reasons.txt -out docs/conformance.md
//
// The reasons file has one line per known failure: a regular expression matching the
// spec's name, a tab, the reason (and the open question for a later issue).
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
	"sort"
	"strings"
)

type testcase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Body    string `xml:",chardata"`
	} `xml:"failure"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

type report struct {
	Suites []struct {
		Cases []testcase `xml:"testcase"`
	} `xml:"testsuite"`
}

// sections are the groups of specs, each a pattern on the spec's name.
var sections = []struct {
	title, pattern string
}{
	{"[sig-network], single node (all of them)", `^\[sig-network\]`},
	{"[sig-apps] [Conformance]: Deployments, ReplicaSets, StatefulSets, Jobs, DaemonSets", `^\[sig-apps\] (Deployment|ReplicaSet|StatefulSet|Job|Daemon set|CronJob).*\[Conformance\]`},
	{"[sig-node] [Conformance]: pods, probes, exec, logs", `^\[sig-node\].*\[Conformance\]`},
	{"[sig-storage] [Conformance]: emptyDir, configMap, secret, projected, downwardAPI volumes", `^\[sig-storage\] (EmptyDir|ConfigMap|Secrets|Projected|Downward API|Subpath).*\[Conformance\]`},
}

// labels is the list of labels the suite appends to each spec's name.
var labels = regexp.MustCompile(` \[[^\[\]]*\]$`)

type reason struct {
	re   *regexp.Regexp
	text string
}

func main() {
	junit := flag.String("junit", "/tmp/minicluster-conformance/junit.xml", "the run's JUnit report")
	reasonsFile := flag.String("reasons", "scripts/conformance-reasons.txt", "known failures: regexp TAB reason")
	out := flag.String("out", "docs/conformance.md", "the summary to write")
	header := flag.String("header", "", "a line about the run (command, duration) for the summary's head")
	flag.Parse()
	if err := run(*junit, *reasonsFile, *out, *header); err != nil {
		log.Fatal(err)
	}
}

func run(junit, reasonsFile, out, header string) error {
	data, err := os.ReadFile(junit)
	if err != nil {
		return err
	}
	var r report
	if err := xml.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", junit, err)
	}
	reasons, err := readReasons(reasonsFile)
	if err != nil {
		return err
	}
	var ran []testcase
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			c.Name = labels.ReplaceAllString(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c.Name), "[It]")), "")
			// Specs the focus left out are "skipped" with no reason of their own.
			if c.Status == "skipped" && (c.Skipped == nil || c.Skipped.Message == "skipped") {
				continue
			}
			if !strings.HasPrefix(c.Name, "[sig-") {
				continue // suite set-up and tear-down nodes
			}
			ran = append(ran, c)
		}
	}
	sort.Slice(ran, func(i, j int) bool { return ran[i].Name < ran[j].Name })

	var b strings.Builder
	b.WriteString("# Kubernetes' e2e suite (v1.32.13) on minicluster\n\n")
	b.WriteString("Written by `scripts/conformancereport` from the JUnit report of `make conformance` " +
		"(scripts/conformance.sh: the real daemon in a fresh network namespace, the suite's images from a registry " +
		"of its own, `e2e.test` with only its standard flags). Do not edit by hand: known failures' reasons are in " +
		"`scripts/conformance-reasons.txt`.\n\n")
	if header != "" {
		b.WriteString(header + "\n\n")
	}
	b.WriteString("| section | specs | passed | failed | skipped: needs more nodes |\n|---|---|---|---|---|\n")
	type row struct {
		c      testcase
		reason string
	}
	bodies := make([]strings.Builder, len(sections))
	for i, s := range sections {
		re := regexp.MustCompile(s.pattern)
		var rows []row
		var passed, failed, skipped int
		conf, confPassed := 0, 0
		for _, c := range ran {
			if !re.MatchString(c.Name) {
				continue
			}
			rw := row{c: c}
			switch {
			case c.Status == "passed":
				passed++
			case c.Status == "skipped" && needsNodes(c):
				skipped++
			default: // failed, or skipped by the spec for something this node lacks
				if c.Status == "skipped" {
					c.Status = "skipped: not for nodes"
					rw.c = c
				}
				failed++
				rw.reason = "**no reason on record**"
				for _, rs := range reasons {
					if rs.re.MatchString(c.Name) {
						rw.reason = rs.text
						break
					}
				}
			}
			if strings.Contains(c.Name, "[Conformance]") && !(c.Status == "skipped" && needsNodes(c)) {
				conf++
				if c.Status == "passed" {
					confPassed++
				}
			}
			rows = append(rows, rw)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", s.title, len(rows), passed, failed, skipped)
		w := &bodies[i]
		fmt.Fprintf(w, "\n## %s\n\n%d specs: %d passed, %d failed (or skipped themselves for something other than the node count), %d skipped themselves for want of more nodes; [Conformance] %d of %d passed", s.title, len(rows), passed, failed, skipped, confPassed, conf)
		if rest := len(rows) - skipped - conf; rest > 0 {
			fmt.Fprintf(w, ", the rest %d of %d (%.0f %%)", passed-confPassed, rest, 100*float64(passed-confPassed)/float64(rest))
		}
		w.WriteString(".\n\n| result | spec | first failure line / why |\n|---|---|---|\n")
		for _, rw := range rows {
			detail := ""
			switch {
			case rw.c.Skipped != nil && rw.reason != "":
				detail = firstLine(rw.c.Skipped.Message) + " — " + rw.reason
			case rw.c.Skipped != nil:
				detail = firstLine(rw.c.Skipped.Message)
			case rw.c.Failure != nil:
				detail = "`" + firstLine(rw.c.Failure.Message) + "` — " + rw.reason
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", rw.c.Status, escape(rw.c.Name), escape(detail))
		}
	}
	for i := range bodies {
		b.WriteString(bodies[i].String())
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// needsNodes says whether a spec skipped itself for want of more nodes than this one.
func needsNodes(c testcase) bool {
	return c.Skipped != nil && regexp.MustCompile(`(?i)\bnodes?\b`).MatchString(c.Skipped.Message)
}

func readReasons(path string) ([]reason, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []reason
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pat, text, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want a pattern, a tab and a reason", path, n)
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rs = append(rs, reason{re, strings.TrimSpace(text)})
	}
	return rs, sc.Err()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
