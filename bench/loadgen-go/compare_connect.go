package main

import (
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"
)

// connectJob is the Node generator's IdleJob, plus the split among processes.
type connectJob struct {
	Scenario    string `json:"scenario"`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Clients     int    `json:"clients"`
	Concurrency int    `json:"concurrency"`
	Keepalive   int    `json:"keepalive"`
	HoldMs      int    `json:"holdMs"`
	TimeLimitMs int    `json:"timeLimitMs"`
	Part        int    `json:"part"`
	Parts       int    `json:"parts"`
	// Barrier: wait for a "start" line on stdin before connecting (processes of a split job start together).
	Barrier bool `json:"barrier"`
}

var clientNumber = regexp.MustCompile(`idle-\d+`)

// compare-connect: opens `clients` connections with `concurrency` CONNECTs in flight, reports
// connects/s and connect latency, holds them until "release" on stdin (bounded by holdMs) so the
// harness can read the broker's RSS (bounded by holdMs), then closes them (bench/compare "idle").
// Idle connections have no reader goroutine: whether the broker closed one is checked with a
// peek at release. (Connecting with blocking syscalls, one thread per CONNECT in flight, cost
// twice the CPU per connect of Go's net package here.)
// Split among processes, each part opens its share (client ids idle-<global index>).
func init() {
	register("compare-connect", mode{
		summary: "bench/compare idle: open N connections, connects/s, hold until \"release\" (JSON job as argument)",
		run: func(args []string) error {
			var job connectJob
			if err := parseJob(args, &job); err != nil {
				return err
			}
			if job.Host == "" {
				job.Host = "127.0.0.1"
			}
			if job.Parts <= 0 {
				job.Parts = 1
			}
			if job.Part < 0 || job.Part >= job.Parts {
				return errorf("part %d of %d", job.Part, job.Parts)
			}
			hardLimit(job.TimeLimitMs)
			if job.Barrier {
				emitEvent("ready", nil)
				if !waitLine("start", time.Duration(job.TimeLimitMs)*time.Millisecond) {
					return errorf("no \"start\" on stdin")
				}
			}
			from, to := share(job.Clients, job.Part, job.Parts)
			var mu sync.Mutex
			conns := make([]*conn, 0, to-from)
			latencies := make([]float64, 0, to-from)
			errs := map[string]int{}
			failed := 0
			deadline := time.Now().Add(time.Duration(job.TimeLimitMs/2) * time.Millisecond)
			cpu0 := cpuSeconds()
			started := nowMs()
			pool(to-from, max(1, job.Concurrency), deadline, func(i int) {
				t := nowMs()
				c, err := dialMQTT(job.Host, job.Port, "idle-"+itoa(from+i), job.Keepalive, 10*time.Second)
				ms := nowMs() - t
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					errs[clientNumber.ReplaceAllString(err.Error(), "idle-N")]++
					return
				}
				conns = append(conns, c)
				latencies = append(latencies, ms)
			})
			seconds := (nowMs() - started) / 1000
			cpu := cpuSeconds() - cpu0
			emitEvent("connected", map[string]any{"connected": len(conns)})
			// Hold the connections until the caller has read the broker's RSS (bounded by holdMs).
			waitLine("release", time.Duration(job.HoldMs)*time.Millisecond)
			stillOpen := 0
			for _, c := range conns {
				if c.stillOpen() {
					stillOpen++
				}
			}
			sort.Float64s(latencies)
			for _, c := range conns {
				c.c.Close()
			}
			return emit(map[string]any{
				"event":              "result",
				"connected":          len(conns),
				"failed":             failed,
				"errors":             errs,
				"stillOpenAtRelease": stillOpen,
				"seconds":            seconds,
				"connectsPerSecond":  float64(len(conns)) / seconds,
				"connectP50ms":       percentile(latencies, 50),
				"connectP99ms":       percentile(latencies, 99),
				"loadgenCpuPercent":  cpu / seconds * 100,
				"loadgen":            "go",
				"part":               job.Part,
				"parts":              job.Parts,
				// For merging split jobs: 1,001 evenly spaced connect latencies.
				"connectQuantiles": quantiles(latencies, 1000),
			})
		},
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
