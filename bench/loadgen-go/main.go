// Command mqgw-loadgen is the benchmarks' MQTT load generator, written in Go so that one
// generator process costs far less per connection and per message than the broker it drives
// (a Node generator saturated its core before Mosquitto did, so ratios against Mosquitto
// measured the generator). Each scenario is a mode in its own file that registers itself in
// init(); the TypeScript harness in bench/ spawns as many generator processes as a run needs
// (one process may hold at most ~20,000 descriptors here) and reads one JSON line of results
// from each process's stdout.
//
// Usage: mqgw-loadgen <mode> [flags]   (mqgw-loadgen without arguments lists the modes)
//
// Built by scripts/loadgen.sh into .cache/go/bin/mqgw-loadgen.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// mode is one scenario: a one-line summary and the function that runs it with the
// arguments after the mode's name.
type mode struct {
	summary string
	run     func(args []string) error
}

var modes = map[string]mode{}

// register is called from each scenario file's init().
func register(name string, m mode) {
	if _, dup := modes[name]; dup {
		panic("mqgw-loadgen: mode registered twice: " + name)
	}
	modes[name] = m
}

// emit writes one result object as a single JSON line on stdout: the harness's only input.
func emit(result any) error {
	return json.NewEncoder(os.Stdout).Encode(result)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mqgw-loadgen <mode> [flags]\nmodes:")
	names := make([]string, 0, len(modes))
	for name := range modes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", name, modes[name].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	m, ok := modes[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mqgw-loadgen: unknown mode %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := m.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "mqgw-loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
