package capture

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offload names a NIC offload the bridge cares about.
type Offload uint8

// Offloads DisableOffloads turns off.
const (
	GRO   Offload = iota + 1 // generic receive offload: merges frames on receive
	LRO                      // large receive offload (hardware GRO)
	TSO                      // TCP segmentation offload
	GSO                      // generic segmentation offload
	TxSum                    // transmit checksum offload
)

var offloadNames = [...]string{"invalid", "gro", "lro", "tso", "gso", "tx-checksum"}

func (o Offload) String() string {
	if int(o) < len(offloadNames) {
		return offloadNames[o]
	}
	return "invalid"
}

// ethtool_value, as in <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreq with the ifr_data union member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

const ethFlagLRO = 1 << 15 // ETH_FLAG_LRO

func ethtool(fd int, iface string, v *ethtoolValue) error {
	var ifr ifreqData
	if len(iface) >= len(ifr.name) {
		return fmt.Errorf("interface name %q too long", iface)
	}
	copy(ifr.name[:], iface)
	ifr.data = uintptr(unsafe.Pointer(v))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return errno
	}
	return nil
}

var offloadCmds = map[Offload][2]uint32{
	GRO:   {unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO},
	TSO:   {unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO},
	GSO:   {unix.ETHTOOL_GGSO, unix.ETHTOOL_SGSO},
	TxSum: {unix.ETHTOOL_GTXCSUM, unix.ETHTOOL_STXCSUM},
}

// OffloadEnabled reports whether an offload is on for iface.
func OffloadEnabled(iface string, o Offload) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("capture: ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	if o == LRO {
		v := ethtoolValue{cmd: unix.ETHTOOL_GFLAGS}
		if err := ethtool(fd, iface, &v); err != nil {
			return false, fmt.Errorf("capture: %s: get %s: %w", iface, o, err)
		}
		return v.data&ethFlagLRO != 0, nil
	}
	c, ok := offloadCmds[o]
	if !ok {
		return false, fmt.Errorf("capture: %w: offload %d", ErrUnsupported, o)
	}
	v := ethtoolValue{cmd: c[0]}
	if err := ethtool(fd, iface, &v); err != nil {
		return false, fmt.Errorf("capture: %s: get %s: %w", iface, o, err)
	}
	return v.data != 0, nil
}

// DisableOffloads turns GRO, LRO, TSO, GSO and transmit checksumming off on
// iface, so a bridge port receives and sends frames no larger than the MTU
// with complete checksums. An offload the driver cannot change and that is
// already off is not an error; one that stays on is.
func DisableOffloads(iface string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("capture: ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	var errs []error
	// Segmentation first: the kernel refuses some changes while a
	// dependent feature is on.
	for _, o := range []Offload{TSO, GSO, GRO, TxSum} {
		c := offloadCmds[o]
		v := ethtoolValue{cmd: c[1], data: 0}
		if err := ethtool(fd, iface, &v); err != nil {
			g := ethtoolValue{cmd: c[0]}
			if gerr := ethtool(fd, iface, &g); gerr == nil && g.data == 0 {
				continue // cannot be changed, but is off
			}
			errs = append(errs, fmt.Errorf("capture: %s: turn %s off: %w", iface, o, err))
		}
	}
	flags := ethtoolValue{cmd: unix.ETHTOOL_GFLAGS}
	if err := ethtool(fd, iface, &flags); err == nil && flags.data&ethFlagLRO != 0 {
		flags.cmd, flags.data = unix.ETHTOOL_SFLAGS, flags.data&^ethFlagLRO
		if err := ethtool(fd, iface, &flags); err != nil {
			errs = append(errs, fmt.Errorf("capture: %s: turn lro off: %w", iface, err))
		}
	}
	return errors.Join(errs...)
}

// EnableOffloads turns GRO, TSO, GSO and transmit checksumming on where
// the driver allows, for a port opened with LiveOptions.Offloads: frames
// arrive merged (GRO; on veth it also switches the driver to NAPI) and
// leave as super-frames the driver or the kernel segments. An offload the
// driver cannot turn on is skipped (the kernel segments or checksums in
// software instead); GRO that stays off is reported, since without it
// the port works but gains nothing.
func EnableOffloads(iface string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("capture: ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	// Checksumming first: segmentation offloads depend on it.
	for _, o := range []Offload{TxSum, GSO, TSO, GRO} {
		c := offloadCmds[o]
		v := ethtoolValue{cmd: c[1], data: 1}
		err := ethtool(fd, iface, &v)
		if err != nil && o == GRO {
			return fmt.Errorf("capture: %s: turn gro on: %w", iface, err)
		}
	}
	return nil
}

// ErrMTUMismatch: the bridged interfaces have different MTUs, so frames
// one side accepts could not leave by the other.
var ErrMTUMismatch = errors.New("capture: bridged interfaces have different MTUs")

// CheckMTU requires the interfaces to share one MTU and returns it.
func CheckMTU(ifaces ...string) (int, error) {
	mtu := 0
	for i, name := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return 0, fmt.Errorf("capture: %s: %w", name, err)
		}
		if i > 0 && ifi.MTU != mtu {
			return 0, fmt.Errorf("%w: %s %d, %s %d", ErrMTUMismatch, ifaces[0], mtu, name, ifi.MTU)
		}
		mtu = ifi.MTU
	}
	return mtu, nil
}
