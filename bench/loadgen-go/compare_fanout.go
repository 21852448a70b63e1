package main

import (
	"fmt"
	"sync"
	"time"
)

// compare-fanout: one QoS 0 publisher -> N subscribers of one topic (bench/compare "fanout").
// Split among processes, each part connects its share of the subscribers and part 0 also runs
// the publisher, whose window follows part 0's subscribers only (every subscriber gets the same
// messages in the same order); the other parts count deliveries and drain until they have what
// part 0 sent (relayed by the harness as "sent N" on stdin).
func init() {
	register("compare-fanout", mode{
		summary: "bench/compare fan-out: 1 QoS 0 publisher -> N subscribers of one topic (JSON job as argument)",
		run: func(args []string) error {
			return runFlow(args, func(job *flowJob) (*engine, bool, func() map[string]any, error) {
				e := newEngine(job, job.Window, 1<<30, job.Batch)
				// A broker writes each message to the subscribers one after another; read at once,
				// every socket holds one message, and a read (with the ACK it sends, which on
				// loopback the reader pays for) cost the generator about as much CPU as the broker
				// spent on that delivery. Pausing after each batch lets a few messages gather per
				// socket; the window (hundreds of messages per subscriber) keeps the broker busy.
				e.reactor.pause = time.Duration(job.ReadPauseUs) * time.Microsecond
				deadline := time.Now().Add(time.Duration(job.TimeLimitMs/2) * time.Millisecond)
				started := nowMs()
				from, to := share(job.Subscribers, job.Part, job.Parts)
				var mu sync.Mutex
				var firstErr error
				pool(to-from, max(1, job.ConnectConcurrency), deadline, func(i int) {
					if _, err := e.addSubscriber(fmt.Sprintf("fo-sub-%d", from+i), "bench/fanout", 0, 1, true); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				})
				if firstErr != nil {
					return nil, false, nil, firstErr
				}
				if len(e.subscribers) != to-from {
					return nil, false, nil, fmt.Errorf("only %d subscribers set up", len(e.subscribers))
				}
				setupSeconds := (nowMs() - started) / 1000
				if job.Part == 0 {
					p, err := e.addPublisher("fo-pub", 0, "bench/fanout", 0)
					if err != nil {
						return nil, false, nil, err
					}
					for _, s := range e.subscribers {
						attach(p, s)
					}
				}
				n := len(e.subscribers)
				return e, job.Latency, func() map[string]any { return map[string]any{"subscribers": n, "setupSeconds": setupSeconds} }, nil
			})
		},
	})
}
