package main

import "fmt"

// compare-fanin: publishers -> one subscriber of bench/fanin/#, QoS 0 (bench/compare "fanin").
// Split among P processes, part k takes its share of the publishers (global indices, so client
// ids stay unique) and its own subscriber of bench/fanin/<k>/#: P subscribers instead of one,
// because a subscriber's window feedback cannot cross processes.
func init() {
	register("compare-fanin", mode{
		summary: "bench/compare fan-in: N QoS 0 publishers -> 1 wildcard subscriber (JSON job as argument)",
		run: func(args []string) error {
			return runFlow(args, func(job *flowJob) (*engine, bool, func() map[string]any, error) {
				e := newEngine(job, job.Window, 1<<30, job.Batch)
				prefix := "bench/fanin/"
				if job.Parts > 1 {
					prefix = fmt.Sprintf("bench/fanin/%d/", job.Part)
				}
				sub, err := e.addSubscriber(fmt.Sprintf("fanin-sub%s", partSuffix(job)), prefix+"#", 0, job.Publishers, true)
				if err != nil {
					return nil, false, nil, err
				}
				from, to := share(job.Publishers, job.Part, job.Parts)
				for i := from; i < to; i++ {
					p, err := e.addPublisher(fmt.Sprintf("fanin-pub-%d", i), i, fmt.Sprintf("%s%d", prefix, i), 0)
					if err != nil {
						return nil, false, nil, err
					}
					attach(p, sub)
				}
				return e, job.Latency, nil, nil
			})
		},
	})
}

// partSuffix keeps client ids unique across the processes of a split job ("" when not split).
func partSuffix(job *flowJob) string {
	if job.Parts <= 1 {
		return ""
	}
	return fmt.Sprintf("-p%d", job.Part)
}
