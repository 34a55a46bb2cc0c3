package contract

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// WatchRecord is one line of `lgctl watch --json`: the topic and the
// message exactly as received.
type WatchRecord struct {
	Topic   string          `json:"topic"`
	Retain  bool            `json:"retain,omitempty"`
	Payload json.RawMessage `json:"payload"`
}

// ChainReport is the audit of one device's event chain.
type ChainReport struct {
	Device     string
	Events     int    // distinct events
	Duplicates int    // identical redeliveries (QoS 1), harmless
	First      uint64 // lowest sequence seen
	Last       uint64 // highest sequence seen
	// With a verifier: events whose own signature verified, and events
	// vouched for by a signed successor through unbroken prev hashes
	// (the signed ones included).
	Signed, Vouched int
	Problems        []string
}

// OK reports a chain without gaps, breaks or conflicting copies.
func (r *ChainReport) OK() bool { return len(r.Problems) == 0 }

// Audit checks every device's event chain in a saved stream: one JSON
// object per line, either a WatchRecord or a bare event (as mosquitto_sub
// prints them). Lines that are not events are skipped. Each event's prev
// must be the SHA-256 of the exact bytes of the event before it; sequences
// must have no holes; two different events must never share a sequence.
func Audit(r io.Reader) ([]*ChainReport, error) { return AuditWith(r, AuditOptions{}) }

// AuditOptions extend Audit.
type AuditOptions struct {
	// Verifier, when set, checks the device signatures too: an event
	// that came on another device's topic, or whose signature fails, is a
	// problem and kept out of the chain it claims; every event must be
	// vouched for by a signed event at or after it.
	Verifier *ReportVerifier
}

// AuditWith is Audit with options.
func AuditWith(r io.Reader, opt AuditOptions) ([]*ChainReport, error) {
	type entry struct {
		raw    []byte
		ev     Event
		signed bool
	}
	byDev := map[string]map[uint64]entry{}
	reports := map[string]*ChainReport{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		raw := b
		topicDev := ""
		var wr WatchRecord
		if json.Unmarshal(b, &wr) == nil && wr.Topic != "" {
			if !strings.HasSuffix(wr.Topic, "/events") {
				continue
			}
			raw = wr.Payload
			topicDev = strings.TrimSuffix(strings.TrimPrefix(wr.Topic, Prefix), "/events")
		}
		var ev Event
		if err := json.Unmarshal(raw, &ev); err != nil || ev.ID == "" || ev.Seq == 0 || ev.Device == "" {
			continue
		}
		raw = append([]byte(nil), raw...)
		rep := reports[ev.Device]
		if rep == nil {
			rep = &ChainReport{Device: ev.Device}
			reports[ev.Device] = rep
			byDev[ev.Device] = map[uint64]entry{}
		}
		if topicDev != "" && topicDev != ev.Device {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: seq %d (id %s) came on the topic of %s: not this device's, kept out", line, ev.Seq, ev.ID, topicDev))
			continue
		}
		signed := false
		if opt.Verifier != nil {
			_, err := opt.Verifier.Verify(KindEvents, ev.Device, raw)
			switch {
			case err == nil:
				signed = true
			case !errors.Is(err, ErrUnsigned):
				rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: seq %d (id %s): signature: %v: kept out", line, ev.Seq, ev.ID, err))
				continue
			}
		}
		if prev, ok := byDev[ev.Device][ev.Seq]; ok {
			if bytes.Equal(prev.raw, raw) {
				rep.Duplicates++
			} else {
				rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: seq %d: two different events (ids %s, %s): altered or forked chain", line, ev.Seq, prev.ev.ID, ev.ID))
			}
			continue
		}
		byDev[ev.Device][ev.Seq] = entry{raw, ev, signed}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("contract: audit: line %d: %w", line+1, err)
	}
	var out []*ChainReport
	for dev, m := range byDev {
		rep := reports[dev]
		seqs := make([]uint64, 0, len(m))
		for s := range m {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		rep.Events, rep.First, rep.Last = len(seqs), seqs[0], seqs[len(seqs)-1]
		if rep.First == 1 && m[1].ev.Prev != Genesis {
			rep.Problems = append(rep.Problems, "seq 1: prev is not the genesis hash")
		}
		for i := 1; i < len(seqs); i++ {
			a, b := m[seqs[i-1]], m[seqs[i]]
			if seqs[i] != seqs[i-1]+1 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("events %d..%d are missing", seqs[i-1]+1, seqs[i]-1))
				continue
			}
			sum := sha256.Sum256(a.raw)
			if b.ev.Prev != hex.EncodeToString(sum[:]) {
				rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (id %s): prev does not match the hash of seq %d: altered", seqs[i], b.ev.ID, seqs[i-1]))
			}
		}
		if opt.Verifier != nil {
			// Walk down from the newest: a signed event vouches for what
			// it reaches through unbroken links.
			vouched := false
			var from, to uint64
			for i := len(seqs) - 1; i >= 0; i-- {
				e := m[seqs[i]]
				if e.signed {
					rep.Signed++
					vouched = true
				} else if vouched && i+1 < len(seqs) {
					next := m[seqs[i+1]]
					sum := sha256.Sum256(e.raw)
					vouched = seqs[i+1] == seqs[i]+1 && next.ev.Prev == hex.EncodeToString(sum[:])
				}
				if vouched {
					rep.Vouched++
					continue
				}
				if to == 0 {
					to = seqs[i]
				}
				from = seqs[i]
			}
			if rep.Vouched < rep.Events {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%d of %d events (seq %d..%d among them) are not vouched for by a device signature", rep.Events-rep.Vouched, rep.Events, from, to))
			}
		}
		out = append(out, rep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}
