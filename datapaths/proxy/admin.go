package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"
)

// Memory is what the admin endpoint's /memory serves: the Go runtime's view
// of the proxy's memory, in bytes.
type Memory struct {
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapSys    uint64 `json:"heap_sys"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
}

// ReadMemory reads the Go runtime's memory statistics (after a GC when gc
// is set).
func ReadMemory(gc bool) Memory {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Memory{
		HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys,
		StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine(),
	}
}

func (p *Builtin) adminHandler() http.Handler {
	mux := http.NewServeMux()
	handleStatsReady(mux, func() (Stats, error) { return p.Stats(), nil }, p.IsReady, p.opts.XDSSocket)
	mux.HandleFunc("/memory", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, ReadMemory(r.URL.Query().Get("gc") == "1"))
	})
	// Go's profiles, to profile the proxy under load in its seat (go tool
	// pprof http://127.0.0.1:15000/debug/pprof/profile?seconds=10 from the
	// proxy's network namespace).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) {
		st := p.state.Load()
		out := map[string]any{"node": p.opts.NodeID}
		if st != nil {
			out["version"] = st.version
			for url, res := range st.raw {
				names := make([]string, 0, len(res))
				for n := range res {
					names = append(names, n)
				}
				sort.Strings(names)
				var items []json.RawMessage
				for _, n := range names {
					b, err := protojson.Marshal(res[n])
					if err != nil {
						continue
					}
					items = append(items, b)
				}
				out[typeNames[url]] = items
			}
		}
		writeJSON(w, out)
	})
	return mux
}

// handleStatsReady serves /stats (JSON, or text with ?format=text) and
// /ready, as every engine whose admin endpoint meshbench serves does.
func handleStatsReady(mux *http.ServeMux, stats func() (Stats, error), ready func() bool, xdsSocket string) {
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := stats()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain")
			_ = s.WriteText(w)
			return
		}
		writeJSON(w, s)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			http.Error(w, "NOT READY: no configuration from "+xdsSocket+" yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("LIVE\n"))
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
