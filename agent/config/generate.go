package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"text/template"

	"linkguard.dev/linkguard/firmware/provision/layout"
)

//go:embed template.yaml
var templateText string

// parseTemplate parses the template when Generate runs, not at init: a
// package-level template would link text/template's parser and executor
// (about 130 KB) into every device binary, which never generates a
// configuration (lgctl provision does).
func parseTemplate() (*template.Template, error) {
	return template.New("template.yaml").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(templateText)
}

// Answers are what a technician tells lgctl provision about a device; with
// the template they make its configuration.
type Answers struct {
	DeviceID, Site string
	Kind           Kind
	Broker         string // the MQTT broker URL
	// A router's links: Mode (default inline), the interface towards the
	// country (Inside, inline mode only) and the one across the border.
	Mode            LinkMode
	Inside, Outside string
	// The key files as installed (NAME.pub) in the layout's trust/policy,
	// operators and trust/release directories. No release key: no update
	// section.
	PolicyKeys, OperatorKeys, ReleaseKeys []string
	Threshold                             int // policy signatures needed; default 1
}

// Generate writes the configuration the answers describe, in the device
// layout (firmware/provision/layout), and parses it as the device will. A
// relay's buses and feeds are its site's wiring, not answers: for a relay,
// write the configuration and provision it as it is.
func Generate(a Answers) ([]byte, error) {
	if a.Kind == KindRelay {
		return nil, errors.New("config: a relay's buses and feeds are its site's wiring: write its configuration and give it to provisioning")
	}
	set(&a.Mode, ModeInline)
	set(&a.Threshold, DefaultThreshold)
	keys := func(dir string, names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = layout.KeyPath(dir, n)
		}
		return out
	}
	tmpl, err := parseTemplate()
	if err != nil {
		return nil, fmt.Errorf("config: template: %w", err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, struct {
		Answers
		StateDir, SlotRoot, PolicyFile, CA, Cert, Key string
	}{
		Answers: Answers{
			DeviceID: a.DeviceID, Site: a.Site, Kind: a.Kind, Broker: a.Broker,
			Mode: a.Mode, Inside: a.Inside, Outside: a.Outside, Threshold: a.Threshold,
			PolicyKeys:   keys(layout.PolicyTrust, a.PolicyKeys),
			OperatorKeys: keys(layout.Operators, a.OperatorKeys),
			ReleaseKeys:  keys(layout.ReleaseTrust, a.ReleaseKeys),
		},
		StateDir: layout.StateDir, SlotRoot: layout.SlotRoot, PolicyFile: layout.Path(layout.Policy),
		CA: layout.Path(layout.CA), Cert: layout.Path(layout.Cert), Key: layout.Path(layout.Key),
	})
	if err != nil {
		return nil, fmt.Errorf("config: template: %w", err)
	}
	if _, err := Parse("generated "+layout.Config, b.Bytes()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
