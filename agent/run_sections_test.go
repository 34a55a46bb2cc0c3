package agent

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
)

// fill sets every field of v, however deep, to a value that is not zero,
// so a conversion that forgets one shows.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 30, 12, 0, *n, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n) * int64(time.Second)) // a whole number of seconds, for durations
	case reflect.Uint64, reflect.Uint32, reflect.Uint8:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	default:
		panic("fill: " + v.Kind().String())
	}
}

// carries checks that the JSON of what a component reports (from) has
// every field the section type can take and that the converted section
// (to) says the same for each of them.
func carries(t *testing.T, from, to any) {
	t.Helper()
	fb, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	// Every field the component reports has its place in the contract.
	dec := json.NewDecoder(bytes.NewReader(fb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflect.New(reflect.TypeOf(to)).Interface()); err != nil {
		t.Fatalf("the component reports a field the contract does not have: %v\n%s", err, fb)
	}
	tb, err := json.Marshal(to)
	if err != nil {
		t.Fatal(err)
	}
	var fm, tm any
	json.Unmarshal(fb, &fm)
	json.Unmarshal(tb, &tm)
	sub(t, "", fm, tm)
}

// sub reports what of want got does not say the same.
func sub(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, _ := got.(map[string]any)
		for k, v := range w {
			sub(t, path+"."+k, v, g[k])
		}
	case []any:
		g, _ := got.([]any)
		if len(g) != len(w) {
			t.Errorf("%s: %d entries, want %d", path, len(g), len(w))
			return
		}
		for i := range w {
			sub(t, path, w[i], g[i])
		}
	default:
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
}

// TestLinksSectionCarriesSnapshot: the links section says everything the
// filter's snapshot does, in the same words, and validates.
func TestLinksSectionCarriesSnapshot(t *testing.T) {
	var s linkfilter.Snapshot
	n := 0
	fill(reflect.ValueOf(&s).Elem(), &n)
	s.Mode = "inline"
	sec := linksSection(s)
	carries(t, s, sec)
	sec.Ports = []contract.PortCounters{{Name: "eth0", Received: 1, RingDropped: 1}}
	validSection(t, contract.SectionLinks, sec)
}

// TestFeedsSectionCarriesTelemetry: the feeds section says everything the
// controller's telemetry does, in the same words, and validates.
func TestFeedsSectionCarriesTelemetry(t *testing.T) {
	var ft feeds.FeedTelemetry
	n := 0
	fill(reflect.ValueOf(&ft).Elem(), &n)
	ft.Circuits[0].Mode = "auto"
	ft.Technician.Circuits = map[string]string{"c1": "off"}
	sec := feedsSection([]feeds.FeedTelemetry{ft})
	carries(t, []feeds.FeedTelemetry{ft}, sec)
	validSection(t, contract.SectionFeeds, sec)
}

func validSection(t *testing.T, name string, sec any) {
	t.Helper()
	b, err := json.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	tel := contract.Telemetry{Device: "d1", BootID: "0123456789abcdef0123456789abcdef", Seq: 1, TS: time.Now().UTC(),
		Agent:    contract.AgentHealth{Goroutines: 1},
		Sections: map[string]json.RawMessage{name: b}}
	msg, err := json.Marshal(tel)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(contract.SchemaTelemetry, msg); err != nil {
		t.Errorf("%v\n%s", err, contract.Pretty(msg))
	}
}
