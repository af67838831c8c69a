// Command table reads `go test -bench` output (several -count runs) and
// prints markdown tables of medians and ratios: each contender against
// raw net/http, ours against each peer.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func main() {
	vals := map[string]map[string][]float64{} // bench -> unit -> values
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, ok := vals[m[1]]; !ok {
			vals[m[1]] = map[string][]float64{}
			order = append(order, m[1])
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				vals[m[1]][f[i+1]] = append(vals[m[1]][f[i+1]], v)
			}
		}
	}
	med := func(b, unit string) float64 {
		v := slices.Clone(vals[b][unit])
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	// Group benchmarks by their prefix before "/contender=".
	groups := map[string][]string{}
	var gorder []string
	for _, b := range order {
		g, c, ok := strings.Cut(b, "/contender=")
		if !ok {
			continue
		}
		if _, seen := groups[g]; !seen {
			gorder = append(gorder, g)
		}
		groups[g] = append(groups[g], c)
	}
	for _, g := range gorder {
		fmt.Printf("### %s (median of %d runs)\n\n", strings.TrimPrefix(g, "Benchmark"), len(vals[g+"/contender=raw"]["ns/op"]))
		units := []string{"cpu-ns/op", "allocs/op", "B/op", "items/s", "ns/op"}
		var present []string
		for _, u := range units {
			if med(g+"/contender=raw", u) > 0 {
				present = append(present, u)
			}
		}
		fmt.Print("| contender |")
		for _, u := range present {
			fmt.Printf(" %s | ratio to raw |", u)
		}
		fmt.Println()
		fmt.Print("|---|")
		for range present {
			fmt.Print("---|---|")
		}
		fmt.Println()
		for _, c := range groups[g] {
			fmt.Printf("| %s |", c)
			for _, u := range present {
				v, raw := med(g+"/contender="+c, u), med(g+"/contender=raw", u)
				fmt.Printf(" %.0f | %.2fx |", v, v/raw)
			}
			fmt.Println()
		}
		fmt.Println()
		for _, peer := range []string{"retryablehttp", "resty"} {
			if _, ok := vals[g+"/contender="+peer]; !ok {
				continue
			}
			ours := g + "/contender=ours"
			fmt.Printf("- ours / %s: CPU %.2fx, allocations %.2fx\n", peer,
				med(ours, "cpu-ns/op")/med(g+"/contender="+peer, "cpu-ns/op"), med(ours, "allocs/op")/med(g+"/contender="+peer, "allocs/op"))
		}
		fmt.Println()
	}
}
