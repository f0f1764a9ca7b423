package reports

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// proxyProc is a datapath-role process of cpu seconds and pss MiB, with
// the descendants given.
func proxyProc(cpu float64, pssMiB int64, desc ...results.Descendant) results.Process {
	return results.Process{Name: "sidecar", Role: results.RoleDatapath, CPUSeconds: cpu, PSSBytes: pssMiB << 20, Descendants: desc}
}

// child is a descendant named comm, of cpu seconds and pss MiB.
func child(comm string, cpu float64, pssMiB int64) results.Descendant {
	return results.Descendant{Comm: comm, CPUSeconds: cpu, PSSBytes: pssMiB << 20}
}

// TestStepProxyFigures checks one step's proxy figures on hand-made
// processes: CPU per request over the datapath-role processes, the part
// of it in engine children (not meshbench's own processes), and PSS per
// proxy, whole and the children's.
func TestStepProxyFigures(t *testing.T) {
	server := results.Process{Name: "echo", Role: results.RoleServer, CPUSeconds: 9, PSSBytes: 99 << 20}
	tests := []struct {
		name  string
		step  results.Step
		want  proxyFigures
		ok    bool
		procs int
	}{
		{
			name: "haproxy engine: a wrapper and its child per proxy",
			step: results.Step{Requests: 1000, Processes: []results.Process{
				proxyProc(0.25, 20, child("haproxy", 0.125, 6)),
				proxyProc(0.75, 24, child("haproxy", 0.375, 8)),
				server,
			}},
			// (0.25+0.75) s / 1000 requests; (0.125+0.375) s / 1000;
			// (20+24)/2 MiB; (6+8)/2 MiB.
			want: proxyFigures{CPUPerReq: 1000, ChildCPUPerReq: 500, PSSPerProxy: 22 << 20, ChildPSSPerProxy: 7 << 20, Children: 2},
			ok:   true,
		},
		{
			name: "builtin engine: no child",
			step: results.Step{Requests: 4000, Processes: []results.Process{proxyProc(0.5, 12), proxyProc(1.5, 14), server}},
			want: proxyFigures{CPUPerReq: 500, PSSPerProxy: 13 << 20},
			ok:   true,
		},
		{
			name: "meshbench's own descendants and unnamed ones are not the engine's",
			step: results.Step{Requests: 1000, Processes: []results.Process{
				proxyProc(1, 30, child("haproxy", 0.5, 10), child("meshbench", 0.25, 4), child("sidecar", 0.125, 2), child("", 0.0625, 1)),
			}},
			want: proxyFigures{CPUPerReq: 1000, ChildCPUPerReq: 500, PSSPerProxy: 30 << 20, ChildPSSPerProxy: 10 << 20, Children: 1},
			ok:   true,
		},
		{
			name: "no proxy (none)",
			step: results.Step{Requests: 1000, Processes: []results.Process{server}},
		},
		{
			name: "no request",
			step: results.Step{Processes: []results.Process{proxyProc(1, 20)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := stepProxyFigures(tc.step)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// engineStep is one repetition of dp at rate: p50 and p99 in µs, 1000
// requests, and its proxies' processes.
func engineStep(dp string, rate float64, rep int, p50, p99 float64, procs ...results.Process) results.Step {
	return results.Step{Datapath: dp, OfferedRPS: rate, Repetition: rep, Requests: 1000,
		LatencyUS: results.Latency{P50: p50, P99: p99}, Processes: procs}
}

// engineRun is a run of steps, with their summaries.
func engineRun(steps ...results.Step) *results.Run {
	return &results.Run{Steps: steps, Summaries: results.Summarize(steps)}
}

// TestEngineSeats checks the engines table on a hand-made run: the added
// latency over none, the proxies' medians over repetitions, the ratios to
// haproxy in the same seat and rate and which of them miss the goal.
func TestEngineSeats(t *testing.T) {
	var steps []results.Step
	for rep, p := range []struct{ none, builtin, haproxy float64 }{{100, 230, 200}, {110, 220, 205}, {90, 240, 195}} {
		r := rep + 1
		steps = append(steps,
			engineStep("none", 100, r, p.none, 300),
			// CPU 1.4 ms/req, 10 MiB per proxy.
			engineStep("sidecar/builtin", 100, r, p.builtin, 700, proxyProc(0.75, 10), proxyProc(0.65, 10)),
			// CPU 1 ms/req, 0.5 of it in haproxy; 20 MiB per proxy, 8 of it haproxy's.
			engineStep("sidecar/haproxy", 100, r, p.haproxy, 500,
				proxyProc(0.5, 20, child("haproxy", 0.25, 8)), proxyProc(0.5, 20, child("haproxy", 0.25, 8))),
			engineStep("nodeproxy/builtin", 100, r, 180, 400, proxyProc(0.5, 30)),
		)
	}
	// At 200 req/s there is no none: nothing is added, ratios to added p50
	// are not computed.
	steps = append(steps,
		engineStep("sidecar/builtin", 200, 1, 260, 800, proxyProc(1, 21)),
		engineStep("sidecar/haproxy", 200, 1, 240, 600, proxyProc(1, 20, child("haproxy", 0.5, 8))),
	)
	got := engineSeats(newModel(engineRun(steps...)))
	na := engineRatio{Text: "—"}
	want := []engineSeat{
		{Seat: "sidecar", Rows: []engineRow{
			{Seat: "sidecar", Datapath: "sidecar/builtin", Rate: "100", P50: "230 [220–240]", P99: "700", AddedP50: "130", AddedP99: "400",
				CPU: "1400", ChildCPU: "—", PSS: "10 MiB", ChildPSS: "—",
				// 130/100, 1400/1000 and 10/20: the first misses 1.25×.
				Ratios: []engineRatio{{Text: "1.30×", Miss: true}, {Text: "1.40×"}, {Text: "0.50×"}}, Warn: true},
			{Seat: "sidecar", Datapath: "sidecar/haproxy", Rate: "100", P50: "200 [195–205]", P99: "500", AddedP50: "100", AddedP99: "200",
				CPU: "1000", ChildCPU: "500", PSS: "20 MiB", ChildPSS: "8.0 MiB", Ratios: []engineRatio{na, na, na}},
			{Seat: "sidecar", Datapath: "sidecar/builtin", Rate: "200", P50: "260", P99: "800", AddedP50: "—", AddedP99: "—",
				CPU: "1000", ChildCPU: "—", PSS: "21 MiB", ChildPSS: "—",
				// 21/20 MiB: more PSS than haproxy's misses "no higher".
				Ratios: []engineRatio{na, {Text: "1.00×"}, {Text: "1.05×", Miss: true}}, Warn: true},
			{Seat: "sidecar", Datapath: "sidecar/haproxy", Rate: "200", P50: "240", P99: "600", AddedP50: "—", AddedP99: "—",
				CPU: "1000", ChildCPU: "500", PSS: "20 MiB", ChildPSS: "8.0 MiB", Ratios: []engineRatio{na, na, na}},
		}},
		// One engine in this seat: shown, with nothing to divide by.
		{Seat: "nodeproxy", Rows: []engineRow{
			{Seat: "nodeproxy", Datapath: "nodeproxy/builtin", Rate: "100", P50: "180", P99: "400", AddedP50: "80", AddedP99: "100",
				CPU: "500", ChildCPU: "—", PSS: "30 MiB", ChildPSS: "—", Ratios: []engineRatio{na, na, na}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("engine seats:\n got %+v\nwant %+v", got, want)
	}
}

// TestEngineSeatsAbsent checks that the section is left out unless a seat
// was measured with two engines named by their labels.
func TestEngineSeatsAbsent(t *testing.T) {
	for name, dps := range map[string][]string{
		"one engine per seat":          {"none", "sidecar/haproxy", "nodeproxy/builtin"},
		"the engine not in the label":  {"none", "sidecar", "sidecar/haproxy"},
		"no proxied datapath labelled": {"none", "sidecar", "nodeproxy", "afxdp"},
	} {
		t.Run(name, func(t *testing.T) {
			var steps []results.Step
			for _, dp := range dps {
				steps = append(steps, engineStep(dp, 100, 1, 200, 400, proxyProc(1, 10)))
			}
			if got := engineSeats(newModel(engineRun(steps...))); got != nil {
				t.Errorf("engine seats %+v, want none", got)
			}
		})
	}
}

// TestEngineNotesRows checks the notes listed per datapath: distinct and
// sorted over its repetitions, "none" without any, a count kept by older
// results without the notes, and the order (the engines table's datapaths,
// then others with notes).
func TestEngineNotesRows(t *testing.T) {
	noted := func(s results.Step, notes ...string) results.Step {
		s.EngineNotes = notes
		return s
	}
	counted := func(s results.Step, n float64) results.Step {
		s.DatapathMetrics = map[string]float64{"proxies": 2, "haproxy_unrendered_notes": n}
		return s
	}
	run := engineRun(
		noted(engineStep("sockmap/haproxy", 100, 1, 200, 400), "cluster b: max_retries has no equivalent"),
		engineStep("none", 100, 1, 100, 200),
		engineStep("sidecar/builtin", 100, 1, 200, 400),
		noted(engineStep("sidecar/haproxy", 100, 1, 200, 400), "cluster b: max_retries has no equivalent", "cluster a: Maglev is a hash ring"),
		noted(engineStep("sidecar/haproxy", 100, 2, 200, 400), "cluster a: Maglev is a hash ring"),
		counted(engineStep("nodeproxy/haproxy", 100, 1, 200, 400), 3),
		engineStep("nodeproxy/builtin", 100, 1, 200, 400),
		counted(engineStep("sidecar", 100, 1, 200, 400), 0),
	)
	m := newModel(run)
	got := engineNotesRows(m, engineSeats(m))
	want := []engineNotesRow{
		{Datapath: "sockmap/haproxy", Text: "none", Notes: []string{"cluster b: max_retries has no equivalent"}},
		{Datapath: "sidecar/builtin", Text: "none"},
		{Datapath: "sidecar/haproxy", Text: "none", Notes: []string{"cluster a: Maglev is a hash ring", "cluster b: max_retries has no equivalent"}},
		{Datapath: "nodeproxy/haproxy", Text: "3, not listed in these results (recorded before the notes were)"},
		{Datapath: "nodeproxy/builtin", Text: "none"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("notes rows:\n got %s\nwant %s", fmtNotesRows(got), fmtNotesRows(want))
	}

	// Without an engines table, only the datapaths with notes are listed.
	m = newModel(engineRun(engineStep("none", 100, 1, 100, 200), noted(engineStep("sidecar/haproxy", 100, 1, 200, 400), "x")))
	if got := engineNotesRows(m, engineSeats(m)); !slices.EqualFunc(got, []engineNotesRow{{Datapath: "sidecar/haproxy", Text: "none", Notes: []string{"x"}}},
		func(a, b engineNotesRow) bool { return reflect.DeepEqual(a, b) }) {
		t.Errorf("notes rows without an engines table: %s", fmtNotesRows(got))
	}
}

func fmtNotesRows(rows []engineNotesRow) string {
	var s string
	for _, r := range rows {
		s += fmt.Sprintf("\n  %s: %q %q", r.Datapath, r.Text, r.Notes)
	}
	return s
}

// enginesRun makes the fixture's sidecar two engines in the sidecar seat:
// sidecar/builtin as measured, and sidecar/haproxy, faster and cheaper,
// each proxy a wrapper with a haproxy child, with the engine's notes; and adds
// nodeproxy/haproxy, alone in its seat, from results that kept only the
// count of its notes.
func enginesRun(t *testing.T) *results.Run {
	run := loadFixture(t)
	haproxy := func(s results.Step, dp string, lat float64) results.Step {
		s.Datapath = dp
		s.LatencyUS.P50 *= lat
		s.LatencyUS.P90 *= lat
		s.LatencyUS.P99 *= lat
		s.LatencyUS.P999 *= lat
		s.Histogram, s.KernelHistogram, s.Windows = results.Histogram{}, nil, nil
		procs := withoutProxies(s.Processes)
		for _, p := range s.Processes {
			if p.Role != results.RoleDatapath {
				continue
			}
			if dp == "nodeproxy/haproxy" {
				if p.Pod != "pod-0-0" && p.Pod != "pod-1-0" {
					continue // one per node
				}
				p.Pod = ""
			}
			p.CPUSeconds *= 0.625
			c := results.Descendant{PID: p.PID + 500, Comm: "haproxy", RSSBytes: 14 << 20, PSSBytes: 6 << 20, CPUSeconds: p.CPUSeconds * 0.75}
			p.Descendants = []results.Descendant{c}
			p.PSSBytes += c.PSSBytes
			procs = append(procs, p)
		}
		s.Processes = procs
		return s
	}
	var steps []results.Step
	for _, s := range run.Steps {
		if s.Datapath != "sidecar" {
			steps = append(steps, s)
			continue
		}
		b := s
		b.Datapath = "sidecar/builtin"
		h := haproxy(s, "sidecar/haproxy", 0.8)
		h.EngineNotes = []string{
			"cluster outbound|8080||echo: least request (two random choices) is rendered as HAProxy's leastconn (all servers)",
			"cluster outbound|8080||echo: max_retries (concurrent retries) has no HAProxy equivalent",
		}
		n := haproxy(s, "nodeproxy/haproxy", 0.9)
		n.DatapathMetrics = map[string]float64{"proxies": 2, "proxies_haproxy": 2, "haproxy_unrendered_notes": 2}
		steps = append(steps, b, h, n)
	}
	run.Steps = steps
	run.Summaries = results.Summarize(run.Steps)
	return run
}
