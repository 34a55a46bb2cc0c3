package capture

// OpenLiveWithoutMetadata opens a port as on a kernel whose receive ring
// has no virtio_net_hdr (before Linux 5.8).
func OpenLiveWithoutMetadata(iface string, o LiveOptions) (*Live, error) {
	return openLive(iface, o, false)
}
