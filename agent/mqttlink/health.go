package mqttlink

// Connected reports whether the broker session is up now.
func (l *Link) Connected() bool {
	select {
	case <-l.upChan():
		return true
	default:
		return false
	}
}
