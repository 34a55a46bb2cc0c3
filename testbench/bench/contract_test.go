package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
)

var record = flag.Bool("record", false, "write a sample of the published messages to agent/mqttlink/contract/testdata")

// TestConsoleShowsWhatDevicesPublish runs a router and a relay controller
// (agent.Run on the testbench's wires and simulated Modbus devices) and the
// console on one broker, and checks that every field the console shows for
// them is filled from what they publish, and that every message they
// publish keeps the contract. It is the test a console reading a section
// under another name than the agent publishes fails.
func TestConsoleShowsWhatDevicesPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var msgs []contract.WatchRecord
	observe := func(topic string, payload []byte, retained bool) {
		mu.Lock()
		msgs = append(msgs, contract.WatchRecord{Topic: topic, Retain: retained, Payload: append([]byte(nil), payload...)})
		mu.Unlock()
	}
	b, err := Start(ctx, Options{Dir: t.TempDir(), TelemetryEvery: time.Second, Observe: observe,
		Routers: []Site{{ID: "router-a", Site: "vientiane-north"}}, Feeds: []Site{{ID: "relay-a", Site: "vientiane-north"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WaitUp(ctx, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gen, stopGen := context.WithCancel(ctx)
	defer stopGen()
	go b.Routers["router-a"].Generate(gen, 1, 200*time.Millisecond)
	if _, err := b.Command(ctx, "relay-a", "throttle.set", map[string]any{"feed": "feed-1", "cap_kw": 25}); err != nil {
		t.Fatal(err)
	}

	// Zero is a value for these: a healthy device queues and loses nothing.
	mayBeZero := map[string]bool{"queue_depth": true, "silent": true, "telemetry_missing": true}
	notOf := map[string]string{"router": "feeds", "relay": "filter"} // what a kind does not have
	err = b.Poll(ctx, 30*time.Second, func() error {
		devs := b.Console.Devices()
		if len(devs) != 2 {
			return fmt.Errorf("%d devices", len(devs))
		}
		for _, d := range devs {
			if err := filled(reflect.ValueOf(d), d.ID, func(name string) bool { return mayBeZero[name] || name == notOf[d.Kind] }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stopGen()

	mu.Lock()
	defer mu.Unlock()
	sample := map[string]contract.WatchRecord{} // one message of each kind, for the contract's tests
	verifier := &contract.ReportVerifier{Roots: b.Keys.Fleet.Pool()}
	for _, m := range msgs {
		if err := schema.ValidateTopic(m.Topic, m.Payload); err != nil {
			t.Errorf("%s breaks the contract: %v\n%s", m.Topic, err, contract.Pretty(m.Payload))
			continue
		}
		// Every report is sealed by its device (events: or vouched for
		// by a later signed one, which the console checks).
		dev, suffix, _ := strings.Cut(strings.TrimPrefix(m.Topic, contract.Prefix), "/")
		if kind := contract.KindOf(suffix); kind != "" && len(m.Payload) > 0 {
			if _, err := verifier.Verify(kind, dev, m.Payload); err != nil && !(kind == contract.KindEvents && errors.Is(err, contract.ErrUnsigned)) {
				t.Errorf("%s is not sealed by its device: %v", m.Topic, err)
			}
		}
		sample[sampleKey(m)] = m
	}
	if *record {
		writeSample(t, sample)
	}
}

// filled reports the first field of v the console shows empty. A slice is
// filled when each field is set in one of its entries at least (a circuit
// may be off, another on); a field skip names is not looked at.
func filled(v reflect.Value, path string, skip func(name string) bool) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return fmt.Errorf("%s is empty", path)
		}
		return filled(v.Elem(), path, skip)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if v.Interface().(time.Time).IsZero() {
				return fmt.Errorf("%s is empty", path)
			}
			return nil
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || skip(name) {
				continue
			}
			if f.Anonymous {
				if err := filled(v.Field(i), path, skip); err != nil {
					return err
				}
				continue
			}
			if err := filled(v.Field(i), path+"."+name, skip); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if v.Len() == 0 {
			return fmt.Errorf("%s is empty", path)
		}
		if k := v.Type().Elem().Kind(); k != reflect.Struct && k != reflect.Pointer {
			return nil
		}
		var errs []error
		for i := range v.Len() {
			err := filled(v.Index(i), path+"[]", skip)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		// Field by field: each must be set somewhere.
		el := v.Type().Elem()
		if el.Kind() == reflect.Pointer {
			el = el.Elem()
		}
		for i := range el.NumField() {
			name, _, _ := strings.Cut(el.Field(i).Tag.Get("json"), ",")
			set := false
			for j := range v.Len() {
				e := reflect.Indirect(v.Index(j))
				set = set || filled(e.Field(i), "", skip) == nil
			}
			if !set && !skip(name) {
				return fmt.Errorf("%s[].%s is empty in every entry", path, name)
			}
		}
		return nil
	default:
		if v.IsZero() {
			return fmt.Errorf("%s is empty", path)
		}
		return nil
	}
}

// sampleKey names a message by its schema and, for events, their type;
// for telemetry, the sections it carries.
func sampleKey(m contract.WatchRecord) string {
	k := contract.SchemaFor(m.Topic)
	switch k {
	case contract.SchemaEvent:
		var e contract.Event
		json.Unmarshal(m.Payload, &e)
		k += " " + e.Type
	case contract.SchemaTelemetry:
		var t contract.Telemetry
		json.Unmarshal(m.Payload, &t)
		for _, s := range slices.Sorted(maps.Keys(t.Sections)) {
			k += " " + s
		}
	}
	return k
}

func writeSample(t *testing.T, sample map[string]contract.WatchRecord) {
	keys := make([]string, 0, len(sample))
	for k := range sample {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		line, err := json.Marshal(sample[k])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join("..", "..", "agent", "mqttlink", "contract", "testdata", "published.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d messages to %s", len(keys), path)
}
