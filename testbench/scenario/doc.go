// Package scenario runs scripted testbench timelines (`testbench run
// SCENARIO.yaml`): it starts a bench of simulated sites, carries out each
// step — send traffic, revoke or approve a link, throttle a feed, kill and
// restart agents or the broker, corrupt a policy file, push a fleet policy —
// and checks each step's expectations the way an operator would, through
// the console's view of the fleet over MQTT. It reports a readable summary
// and a JSON report.
//
// It is testbench code; nothing outside testbench imports it.
package scenario
