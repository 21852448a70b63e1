package main

import "fmt"

// compare-qos1: publisher/subscriber pairs on distinct topics, QoS 1 both ways, `inflight` per
// publisher (bench/compare "qos1"). Split among processes, each part takes its share of the pairs
// (the pairs are independent, so the split changes nothing for the broker).
func init() {
	register("compare-qos1", mode{
		summary: "bench/compare QoS 1 pairs: publisher -> subscriber per topic, in-flight limit (JSON job as argument)",
		run: func(args []string) error {
			return runFlow(args, func(job *flowJob) (*engine, bool, func() map[string]any, error) {
				e := newEngine(job, job.Inflight, job.Inflight, job.Inflight)
				from, to := share(job.Pairs, job.Part, job.Parts)
				for i := from; i < to; i++ {
					topic := fmt.Sprintf("bench/q1/%d", i)
					sub, err := e.addSubscriber(fmt.Sprintf("q1-sub-%d", i), topic, 1, job.Pairs, true)
					if err != nil {
						return nil, false, nil, err
					}
					p, err := e.addPublisher(fmt.Sprintf("q1-pub-%d", i), i, topic, 1)
					if err != nil {
						return nil, false, nil, err
					}
					attach(p, sub)
				}
				return e, true, nil, nil
			})
		},
	})
}
