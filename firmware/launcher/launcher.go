package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"linkguard.dev/linkguard/firmware/slot"
)

// Config configures the launcher.
type Config struct {
	Root           string        // slot root
	MaxAttempts    int           // starts of a candidate before it is rolled back; 0 means 3
	HealthDeadline time.Duration // a candidate must commit within this of its start; 0 means 5 minutes
	Poll           time.Duration // how often the state is read while a candidate is on trial; 0 means 1 s
	KillGrace      time.Duration // SIGTERM to SIGKILL when a candidate is stopped; 0 means 10 s
	Args           []string      // arguments for the slot's binary
	Logger         *slog.Logger

	// Exec replaces the launcher with a committed slot's binary; nil means
	// syscall.Exec. It returns only on failure.
	Exec func(path string, argv, env []string) error
}

func (c *Config) defaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.HealthDeadline <= 0 {
		c.HealthDeadline = 5 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 10 * time.Second
	}
	if c.Exec == nil {
		c.Exec = syscall.Exec
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run starts the slot the state names. A committed slot's binary replaces the
// launcher (Exec). A candidate is started as a child and supervised until it
// commits (then Run waits for it and returns its exit code), exits (its attempt
// is used up and the next start is decided), or misses the deadline (it is
// stopped and rolled back). Run returns the exit code for the launcher.
func Run(ctx context.Context, cfg Config) (int, error) {
	cfg.defaults()
	log := cfg.Logger
	s, err := slot.New(cfg.Root)
	if err != nil {
		return 1, err
	}
	for {
		b, err := s.PrepareBoot(cfg.MaxAttempts)
		if err != nil {
			return 1, fmt.Errorf("launcher: %w", err)
		}
		if r := b.RolledBk; r != nil {
			log.Warn("rolled back", "from", r.From, "from_version", r.FromVersion, "to", r.To, "to_version", r.ToVersion, "reason", r.Reason)
		}
		bin := s.Binary(b.Slot)
		env := append(os.Environ(), slot.EnvRoot+"="+cfg.Root, slot.EnvSlot+"="+string(b.Slot))
		if !b.Trial {
			log.Info("starting", "slot", b.Slot, "version", b.Version)
			err := cfg.Exec(bin, append([]string{bin}, cfg.Args...), append(env, slot.EnvTrial+"=0"))
			return 1, fmt.Errorf("launcher: exec %s: %w", bin, err)
		}
		log.Info("trying candidate", "slot", b.Slot, "version", b.Version, "attempt", b.Attempt, "of", cfg.MaxAttempts, "deadline", cfg.HealthDeadline)
		code, again, err := supervise(ctx, s, &cfg, b, bin, append(env, slot.EnvTrial+"=1"))
		if !again {
			return code, err
		}
		if err != nil {
			log.Warn("candidate failed", "slot", b.Slot, "err", err)
		}
	}
}

// supervise runs a candidate. again reports that the candidate failed and the
// next start must be decided.
func supervise(ctx context.Context, s *slot.Store, cfg *Config, b slot.Boot, bin string, env []string) (code int, again bool, err error) {
	cmd := exec.Command(bin, cfg.Args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, true, fmt.Errorf("launcher: start candidate: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	deadline := time.NewTimer(cfg.HealthDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	committed, stopping := false, false
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(cfg.KillGrace):
			_ = cmd.Process.Kill()
			return <-done
		}
	}
	for {
		select {
		case werr := <-done:
			code := exitCode(werr)
			if committed || stopping {
				return code, false, nil
			}
			if st, err := s.Load(); err == nil && st.Candidate == "" && st.Active == b.Slot {
				return code, false, nil // committed just before exiting
			}
			if werr == nil {
				return code, true, errors.New("launcher: candidate exited (status 0) before reporting healthy")
			}
			return code, true, fmt.Errorf("launcher: candidate exited before reporting healthy: %w", werr)
		case sig := <-sigs:
			stopping = true
			_ = cmd.Process.Signal(sig)
		case <-ctx.Done():
			stopping = true
			stop()
			return 1, false, ctx.Err()
		case <-tick.C:
			if committed {
				continue
			}
			st, err := s.Load()
			if err != nil {
				continue
			}
			switch {
			case st.Candidate == "" && st.Active == b.Slot:
				committed = true
				deadline.Stop()
				cfg.Logger.Info("candidate committed", "slot", b.Slot, "version", b.Version)
			case st.Candidate != b.Slot:
				// Rolled back by an operator meanwhile.
				stop()
				return 0, true, errors.New("launcher: candidate abandoned by operator")
			}
		case <-deadline.C:
			if committed {
				continue
			}
			reason := fmt.Sprintf("candidate did not report healthy within %v", cfg.HealthDeadline)
			if _, err := s.Abandon(b.Slot, reason); errors.Is(err, slot.ErrNotCandidate) {
				committed = true // it committed at the last moment
				continue
			} else if err != nil {
				return 1, false, fmt.Errorf("launcher: roll back: %w", err)
			}
			cfg.Logger.Warn("rolled back", "from", b.Slot, "from_version", b.Version, "reason", reason)
			stop()
			return 0, true, nil
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if c := ee.ExitCode(); c >= 0 {
			return c
		}
		return 128 + 9
	}
	return 1
}
