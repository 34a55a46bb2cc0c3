// Package watchdog keeps a Linux hardware watchdog (/dev/watchdog) fed while
// the parts it guards make progress, and disarms it with the magic close on
// a clean stop.
//
// It imports only the standard library; what counts as progress is the
// caller's Alive function.
package watchdog
