package metrics

import (
	"reflect"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	before := &Snapshot{
		Time: t0,
		Procs: map[int]ProcStat{
			10: {PID: 10, Comm: "echo", StartTicks: 5, CPUSeconds: 1.5, Tasks: []TaskStat{
				{TID: 10, CPUNanos: 1000, VoluntaryCtxt: 10, NonvoluntaryCtxt: 1},
				{TID: 11, CPUNanos: 500, VoluntaryCtxt: 5},
				{TID: 12, CPUNanos: 700, VoluntaryCtxt: 7}, // exits
			}},
			20: {PID: 20, Comm: "proxy", StartTicks: 6},
			30: {PID: 30, Comm: "old", StartTicks: 7}, // pid reused below
		},
		TCP: map[string]TCP{
			"/run/netns/a": {InSegs: 100, OutSegs: 90},
			"/run/netns/b": {InSegs: 5, OutSegs: 5},
			"/run/netns/c": {InSegs: 1}, // gone later
		},
	}
	after := &Snapshot{
		Time: t0.Add(10 * time.Second),
		Procs: map[int]ProcStat{
			10: {PID: 10, Comm: "echo", StartTicks: 5, CPUSeconds: 2.25, RSSBytes: 4096, PSSBytes: 2048, Tasks: []TaskStat{
				{TID: 10, CPUNanos: 1600, VoluntaryCtxt: 15, NonvoluntaryCtxt: 3},
				{TID: 11, CPUNanos: 900, VoluntaryCtxt: 9},
				{TID: 13, CPUNanos: 50, VoluntaryCtxt: 2, NonvoluntaryCtxt: 1}, // new thread
			}},
			30: {PID: 30, Comm: "new", StartTicks: 99},
			40: {PID: 40, Comm: "load", StartTicks: 100},
		},
		TCP: map[string]TCP{
			"/run/netns/a": {InSegs: 160, OutSegs: 150, RetransSegs: 2},
			"/run/netns/b": {InSegs: 25, OutSegs: 15},
			"/run/netns/d": {InSegs: 1000}, // new
		},
	}
	d := Diff(before, after)
	if d.Interval != 10*time.Second {
		t.Errorf("Interval = %v", d.Interval)
	}
	want := map[int]ProcDelta{10: {
		PID: 10, Comm: "echo", CPUSeconds: 0.75,
		CPUNanos:      600 + 400 + 50,
		VoluntaryCtxt: 5 + 4 + 2, NonvoluntaryCtxt: 2 + 0 + 1,
		RSSBytes: 4096, PSSBytes: 2048,
	}}
	if !reflect.DeepEqual(d.Procs, want) {
		t.Errorf("Procs = %+v\nwant %+v", d.Procs, want)
	}
	if got := pids(d.Gone); !reflect.DeepEqual(got, []int{20, 30}) {
		t.Errorf("Gone = %v, want [20 30]", got)
	}
	if got := pids(d.Appeared); !reflect.DeepEqual(got, []int{30, 40}) {
		t.Errorf("Appeared = %v, want [30 40]", got)
	}
	if wantTCP := (TCP{InSegs: 80, OutSegs: 70, RetransSegs: 2}); d.TCP != wantTCP || d.Namespaces != 2 {
		t.Errorf("TCP = %+v over %d namespaces, want %+v over 2", d.TCP, d.Namespaces, wantTCP)
	}
	if got := d.CPUSeconds(); got != 0.75 {
		t.Errorf("CPUSeconds = %v, want 0.75", got)
	}
	if got := d.ContextSwitches(); got != 14 {
		t.Errorf("ContextSwitches = %d, want 14", got)
	}
}

func TestDiffReusedTID(t *testing.T) {
	b := ProcStat{PID: 1, Tasks: []TaskStat{{TID: 5, CPUNanos: 1000, VoluntaryCtxt: 100}}}
	a := ProcStat{PID: 1, Tasks: []TaskStat{{TID: 5, CPUNanos: 10, VoluntaryCtxt: 1}}}
	d := diffProc(b, a)
	if d.CPUNanos != 10 || d.VoluntaryCtxt != 1 {
		t.Errorf("reused tid: got %d ns %d switches, want it counted in full (10, 1)", d.CPUNanos, d.VoluntaryCtxt)
	}
}

func TestDiffNil(t *testing.T) {
	after := &Snapshot{Time: time.Now(), Procs: map[int]ProcStat{1: {PID: 1}}}
	d := Diff(nil, after)
	if len(d.Procs) != 0 || len(d.Appeared) != 1 || d.Interval != 0 {
		t.Errorf("Diff(nil, after) = %+v", d)
	}
	d = Diff(after, nil)
	if len(d.Gone) != 1 {
		t.Errorf("Diff(after, nil) = %+v", d)
	}
}

func TestSnapshotTotalTCP(t *testing.T) {
	s := &Snapshot{TCP: map[string]TCP{"a": {InSegs: 1, OutSegs: 2}, "b": {InSegs: 3, OutSegs: 4}}}
	if got := s.TotalTCP(); got != (TCP{InSegs: 4, OutSegs: 6}) {
		t.Errorf("TotalTCP = %+v", got)
	}
}

func pids(ps []ProcStat) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

// A tree's members keep their own figures, and their CPU over an interval:
// a member present at both ends counts the difference, one that appeared
// (another process with a reused pid, say) counts in full.
func TestDiffMembers(t *testing.T) {
	before := &Snapshot{Procs: map[int]ProcStat{10: {PID: 10, StartTicks: 1, CPUSeconds: 1, Descendants: []Member{
		{PID: 11, StartTicks: 2, CPUSeconds: 0.5, PSSBytes: 100},
		{PID: 12, StartTicks: 3, CPUSeconds: 0.2},
	}}}}
	after := &Snapshot{Procs: map[int]ProcStat{10: {PID: 10, StartTicks: 1, CPUSeconds: 3, Descendants: []Member{
		{PID: 11, StartTicks: 2, CPUSeconds: 1.25, PSSBytes: 200, RSSBytes: 300},
		{PID: 12, StartTicks: 9, CPUSeconds: 0.3},
	}}}}
	got := Diff(before, after).Procs[10].Descendants
	if len(got) != 2 || got[0].CPUSeconds != 0.75 || got[0].PSSBytes != 200 || got[0].RSSBytes != 300 || got[1].CPUSeconds != 0.3 {
		t.Errorf("descendants %+v: want 11 with 0.75 s and its memory at the end, 12 (new) with 0.3 s", got)
	}
}
