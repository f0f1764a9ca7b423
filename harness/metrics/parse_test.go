package metrics

import (
	"os"
	"path/filepath"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    procStatLine
		wantErr bool
	}{
		{name: "comm with spaces and parens", in: readFixture(t, "stat"),
			want: procStatLine{comm: "my (odd) name", state: 'S', ppid: 1, utime: 250, stime: 75, cutime: 30, cstime: 5, threads: 7, startTicks: 123456}},
		{name: "zombie", in: readFixture(t, "stat-zombie"),
			want: procStatLine{comm: "zombie", state: 'Z', ppid: 1, utime: 250, stime: 75, threads: 1, startTicks: 123456}},
		{name: "no comm", in: []byte("12 S 1 2 3"), wantErr: true},
		{name: "truncated", in: []byte("12 (x) S 1 2 3"), wantErr: true},
		{name: "bad number", in: []byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 75 0 0 20 0 7 0 123456 0"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name       string
		in         []byte
		vol, nonvo int64
		wantErr    bool
	}{
		{name: "fixture", in: readFixture(t, "status"), vol: 163, nonvo: 57},
		{name: "minimal", in: []byte("Name:\tx\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t9\n"), vol: 5, nonvo: 9},
		{name: "missing", in: []byte("Name:\tx\nvoluntary_ctxt_switches:\t5\n"), wantErr: true},
		{name: "bad number", in: []byte("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t9\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, n, err := parseStatus(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if v != tt.vol || n != tt.nonvo {
				t.Errorf("got %d/%d, want %d/%d", v, n, tt.vol, tt.nonvo)
			}
		})
	}
}

func TestParseSmapsRollup(t *testing.T) {
	tests := []struct {
		name          string
		in            []byte
		rss, pss, uss int64
		wantErr       bool
	}{
		{name: "fixture", in: readFixture(t, "smaps_rollup"), rss: 1696 * 1024, pss: 330 * 1024, uss: (48 + 112) * 1024},
		{name: "kernel thread", in: nil},
		{name: "bad unit", in: []byte("Rss: 12 MB\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, pss, uss, err := parseSmapsRollup(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if rss != tt.rss || pss != tt.pss || uss != tt.uss {
				t.Errorf("got rss %d pss %d uss %d, want %d %d %d", rss, pss, uss, tt.rss, tt.pss, tt.uss)
			}
		})
	}
}

func TestParseSchedstat(t *testing.T) {
	n, err := parseSchedstat([]byte("22029763 16377756 2160\n"))
	if err != nil || n != 22029763 {
		t.Errorf("got %d, %v; want 22029763", n, err)
	}
	if _, err := parseSchedstat(nil); err == nil {
		t.Error("empty schedstat parsed without error")
	}
}

func TestParseSNMP(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    TCP
		wantErr bool
	}{
		{name: "fixture", in: readFixture(t, "snmp"), want: TCP{
			InSegs: 10883, OutSegs: 8048, ActiveOpens: 39, PassiveOpens: 2, OutRsts: 2}},
		{name: "reordered columns", in: []byte("Tcp: OutSegs InSegs RetransSegs\nTcp: 5 7 1\n"),
			want: TCP{InSegs: 7, OutSegs: 5, RetransSegs: 1}},
		{name: "unsigned past 2^63", in: []byte("Tcp: InSegs OutSegs\nTcp: 18446744073709551615 1\n"),
			want: TCP{InSegs: -1, OutSegs: 1}},
		{name: "no tcp", in: []byte("Udp: InDatagrams\nUdp: 3\n"), wantErr: true},
		{name: "short values", in: []byte("Tcp: InSegs OutSegs\nTcp: 1\n"), wantErr: true},
		{name: "no segs", in: []byte("Tcp: ActiveOpens\nTcp: 1\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSNMP(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTCPArithmetic(t *testing.T) {
	a := TCP{InSegs: 10, OutSegs: 20, RetransSegs: 1, ActiveOpens: 2, PassiveOpens: 3, AttemptFails: 4, EstabResets: 5, InErrs: 6, OutRsts: 7}
	b := TCP{InSegs: 1, OutSegs: 2, RetransSegs: 1, ActiveOpens: 1, PassiveOpens: 1, AttemptFails: 1, EstabResets: 1, InErrs: 1, OutRsts: 1}
	if got := a.Add(b).Sub(b); got != a {
		t.Errorf("a+b-b = %+v, want %+v", got, a)
	}
	want := TCP{InSegs: 9, OutSegs: 18, ActiveOpens: 1, PassiveOpens: 2, AttemptFails: 3, EstabResets: 4, InErrs: 5, OutRsts: 6}
	if got := a.Sub(b); got != want {
		t.Errorf("a-b = %+v, want %+v", got, want)
	}
	if got := a.Segments(); got != 30 {
		t.Errorf("Segments = %d, want 30", got)
	}
}
