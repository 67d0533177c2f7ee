// Command benchratio reads `go test -bench` output on stdin, echoes it, and
// then prints each zmqkit benchmark next to its hand-written pebbe/zmq4
// twin: sub-benchmarks whose last name element is "zmqkit" and "pebbe".
//
// For throughput (a msgs/s or reqs/s metric) the ratio is zmqkit/pebbe, so
// higher is better; for latency (ns/op only) it is zmqkit/pebbe too, so
// lower is better. A paired benchmark, which times both sides itself and
// reports zmqkit-ns/rt and pebbe-ns/rt metrics, gets a row of its own. Repeated runs give the median, which one disturbed run on
// a shared machine cannot drag; make bench interleaves the runs of the two
// sides so that both see the same machine.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type sample map[string][]float64 // values by unit

var gomaxprocs = regexp.MustCompile(`-\d+$`)

func main() {
	results := map[string]*sample{}
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Println(line)
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := gomaxprocs.ReplaceAllString(f[0], "")
		s := results[name]
		if s == nil {
			s = &sample{}
			results[name] = s
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			(*s)[f[i+1]] = append((*s)[f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
	median := func(s *sample, unit string) (float64, bool) {
		v := append([]float64(nil), (*s)[unit]...)
		if len(v) == 0 {
			return 0, false
		}
		sort.Float64s(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2, true
		}
		return v[len(v)/2], true
	}
	type row struct{ name, unit, better, zk, pb, ratio, allocs string }
	var rows []row
	for _, name := range order {
		if !strings.HasSuffix(name, "/zmqkit") {
			continue
		}
		base := strings.TrimSuffix(name, "/zmqkit")
		zk, pb := results[name], results[base+"/pebbe"]
		if pb == nil {
			continue
		}
		unit, better := "ns/op", "lower"
		for _, u := range []string{"msgs/s", "reqs/s"} {
			if _, ok := median(zk, u); ok {
				unit, better = u, "higher"
			}
		}
		zv, _ := median(zk, unit)
		pv, ok := median(pb, unit)
		if !ok || pv == 0 {
			continue
		}
		za, _ := median(zk, "allocs/op")
		pa, _ := median(pb, "allocs/op")
		rows = append(rows, row{
			name: base, unit: unit, better: better,
			zk: fmt.Sprintf("%.0f", zv), pb: fmt.Sprintf("%.0f", pv),
			ratio:  fmt.Sprintf("%.2f", zv/pv),
			allocs: fmt.Sprintf("%.0f / %.0f", za, pa),
		})
	}
	// Paired benchmarks time both sides in one run and report each side's
	// time per operation as a metric.
	for _, name := range order {
		zk, ok1 := median(results[name], "zmqkit-ns/rt")
		pb, ok2 := median(results[name], "pebbe-ns/rt")
		if !ok1 || !ok2 || pb == 0 {
			continue
		}
		rows = append(rows, row{
			name: name, unit: "ns/rt", better: "lower",
			zk: fmt.Sprintf("%.0f", zk), pb: fmt.Sprintf("%.0f", pb),
			ratio: fmt.Sprintf("%.2f", zk/pb), allocs: "-",
		})
	}
	if len(rows) == 0 {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	fmt.Println()
	fmt.Println("zmqkit next to hand-written pebbe/zmq4 (same run; ratio = zmqkit / pebbe):")
	fmt.Printf("%-46s %-7s %12s %12s %7s  %-7s %s\n", "benchmark", "unit", "zmqkit", "pebbe", "ratio", "better", "allocs/op zmqkit / pebbe")
	for _, r := range rows {
		fmt.Printf("%-46s %-7s %12s %12s %7s  %-7s %s\n", r.name, r.unit, r.zk, r.pb, r.ratio, r.better, r.allocs)
	}
}
