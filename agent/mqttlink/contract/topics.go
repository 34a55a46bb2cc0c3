package contract

// Topic contract version 1 (README.md).
const (
	Prefix      = "linkguard/v1/"
	PolicyTopic = Prefix + "policy"
	// RosterTopic carries the retained, committee-signed roster of
	// operators (policy/roster).
	RosterTopic = Prefix + "roster"
	AllCmdTopic = Prefix + "all/cmd"
)

// Topics are one device's topics.
type Topics struct {
	State, Telemetry, Events, Cmd, Result, Evidence, SiteCmd string
}

// TopicsFor returns the topics of a device at a site.
func TopicsFor(device, site string) Topics {
	p := Prefix + device + "/"
	return Topics{
		State:     p + "state",
		Telemetry: p + "telemetry",
		Events:    p + "events",
		Cmd:       p + "cmd",
		Result:    p + "cmd/result",
		Evidence:  p + "evidence",
		SiteCmd:   Prefix + "site/" + site + "/cmd",
	}
}

// CmdTopicFor is where a command for target (a device id, "site:NAME" or
// "all") is published.
func CmdTopicFor(target string) string {
	switch {
	case target == "all":
		return AllCmdTopic
	case len(target) > 5 && target[:5] == "site:":
		return Prefix + "site/" + target[5:] + "/cmd"
	}
	return Prefix + target + "/cmd"
}
