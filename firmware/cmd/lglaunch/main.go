// Command lglaunch is the launcher the init system starts: it picks the slot
// to run (trying a candidate, rolling back a failed one) and runs its
// linkguard binary with the arguments after the flags.
//
//	lglaunch -root /opt/linkguard -- run --config /etc/linkguard/config.yaml
//	lglaunch -root /opt/linkguard -status
//	lglaunch -root /opt/linkguard -commit b
//	lglaunch -root /opt/linkguard -cli -- update status   (the active slot's CLI)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"linkguard.dev/linkguard/firmware/launcher"
	"linkguard.dev/linkguard/firmware/slot"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := launcher.Config{}
	fs := flag.NewFlagSet("lglaunch", flag.ContinueOnError)
	fs.StringVar(&cfg.Root, "root", "/opt/linkguard", "slot root directory")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", 3, "starts of a candidate before it is rolled back")
	fs.DurationVar(&cfg.HealthDeadline, "health-deadline", 0, "time a candidate has to report healthy (default 5m)")
	fs.DurationVar(&cfg.Poll, "poll", 0, "state poll interval while a candidate is on trial (default 1s)")
	fs.DurationVar(&cfg.KillGrace, "kill-grace", 0, "SIGTERM to SIGKILL when stopping a candidate (default 10s)")
	status := fs.Bool("status", false, "print the slot state as JSON and exit")
	commit := fs.String("commit", "", "commit candidate slot `a|b` and exit")
	cli := fs.Bool("cli", false, "run the committed active slot's binary with the arguments as a command (no boot accounting)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Args = fs.Args()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "lglaunch")
	switch {
	case *status:
		s, err := slot.New(cfg.Root)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		st, err := s.Load()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Println(string(b))
		return 0
	case *cli:
		s, err := slot.New(cfg.Root)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		st, err := s.Load()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bin := s.Binary(st.Active)
		err = syscall.Exec(bin, append([]string{bin}, cfg.Args...), os.Environ())
		fmt.Fprintln(os.Stderr, "lglaunch: exec", bin+":", err)
		return 1
	case *commit != "":
		s, err := slot.New(cfg.Root)
		if err == nil {
			_, err = s.Commit(slot.Name(*commit))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	code, err := launcher.Run(context.Background(), cfg)
	if err != nil {
		cfg.Logger.Error("launcher failed", "err", err)
	}
	return code
}
