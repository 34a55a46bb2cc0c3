package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/policy/match"
)

func newReplayCmd() *cobra.Command {
	var tf trustFlags
	var file, site, at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "replay --policy FILE --trust PUB... --site S CAPTURE.pcap|.pcapng",
		Short: "Run a capture through the real classifier and print per-flow verdicts and totals",
		Long: "Runs every frame of a pcap or pcapng capture through the packet filter as inline mode would,\n" +
			"and prints what the signed policy does to each flow: what a policy would do to real traffic\n" +
			"before it is rolled out. Flows are judged at --at (default: now), not at the capture's time.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, now, err := tf.policyAt(cmd.ErrOrStderr(), file, at, "replaying")
			if err != nil {
				return err
			}
			src, err := capture.OpenFile(args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			f := linkfilter.New(linkfilter.Options{Site: site, MaxFlows: 1 << 20, DecideAt: now.UnixNano()})
			f.SetMatcher(match.Compile(v.Policy))
			res := linkfilter.Replay(cmd.Context(), f, src)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printReplay(cmd.OutOrStdout(), args[0], res)
			return nil
		},
	}
	tf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&file, "policy", "", "signed policy file")
	fl.StringVar(&site, "site", "", "the device's site")
	fl.StringVar(&at, "at", "", "judge at this RFC 3339 time instead of now")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("policy")
	return cmd
}

func printReplay(w io.Writer, name string, r *linkfilter.ReplayResult) {
	fmt.Fprintf(w, "%-9s %-5s %-41s %-41s %7s %9s %7s  %s\n", "VERDICT", "PROTO", "FROM", "TO", "PKTS", "BYTES", "DROPPED", "APPROVAL / REASON")
	for _, fl := range r.Flows {
		why := fl.Approval
		if why == "" {
			why = fl.Reason
		}
		if fl.Technique != "" {
			why += " [" + fl.Technique + "]"
		}
		if fl.Via != "" {
			why += " via " + fl.Via
		}
		fmt.Fprintf(w, "%-9s %-5s %-41s %-41s %7d %9d %7d  %s\n", fl.Verdict, fl.Proto,
			endpoint(fl.Src.String(), fl.SPort), endpoint(fl.Dst.String(), fl.DPort), fl.Packets, fl.Bytes, fl.Dropped, why)
	}
	fmt.Fprintf(w, "\n%s: %d frames, %d flows: %d passed, %d dropped inline\n", name, r.Frames, len(r.Flows), r.Passed, r.Dropped)
	for _, k := range []string{"domestic", "approved", "monitored", "denied", "pass"} {
		if n := r.Verdicts[k]; n > 0 {
			fmt.Fprintf(w, "  %-10s %d frames\n", k, n)
		}
	}
	c := r.Counters
	fmt.Fprintf(w, "  not in a flow: %d link control, %d other non-IP, %d malformed, %d unknown fragments\n",
		c.LinkControl, c.Other, c.Malformed, c.FragmentsUnknown)
	if len(r.Techniques) > 0 {
		names := make([]string, 0, len(r.Techniques))
		for k := range r.Techniques {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "  evasions:")
		for _, k := range names {
			fmt.Fprintf(w, " %s %d", k, r.Techniques[k])
		}
		fmt.Fprintln(w)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  stopped early: %s\n", r.Error)
	}
}

func endpoint(a string, port uint16) string {
	if port == 0 {
		return a
	}
	if len(a) > 15 {
		return "[" + a + "]:" + fmt.Sprint(port)
	}
	return a + ":" + fmt.Sprint(port)
}
