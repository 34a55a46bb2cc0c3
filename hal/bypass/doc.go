// Package bypass lets an inline link fail open: a kernel bridge carries it
// whenever the agent is not running.
//
// The bridge ("lgbypass") joins the two ports, and while the agent runs it
// is held shut by netdev ingress chains that drop every frame the ports
// receive before the bridge sees it (AF_PACKET taps, the agent's own ports,
// see frames before the ingress hook, so the agent still forwards what it
// judges allowed). The chains live in an nftables table owned by the
// agent's netlink socket (NFT_TABLE_F_OWNER, Linux 5.12): when the agent
// exits, however it exits — kill -9, a crash, power-cycled user space — the
// kernel deletes the table and the bridge carries the link unfiltered. No
// supervisor has to notice.
//
// google/nftables cannot set a table's flags, so the owner table and its
// two chains are one hand-built nfnetlink batch (hold.go); the bridge is
// made with jsimonetti/rtnetlink.
//
// For a fail-closed link, Release takes the ports out of lgbypass (left by
// an earlier fail-open run or a technician's manual bypass): a kernel
// bridge beside the agent would forward everything unfiltered.
//
// It imports netlink libraries and x/sys only: never agent, policy or MQTT.
package bypass
