package bundle

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a release version "MAJOR.MINOR.PATCH" with an optional
// "-prerelease" suffix; a leading "v" is accepted. Build metadata is not
// allowed: two bundles that differ only there would be indistinguishable.
type Version struct {
	Major, Minor, Patch uint32
	Pre                 string
}

// ParseVersion parses s as a Version.
func ParseVersion(s string) (Version, error) {
	var v Version
	t := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(t, '-'); i >= 0 {
		v.Pre = t[i+1:]
		t = t[:i]
		if v.Pre == "" || strings.ContainsFunc(v.Pre, func(r rune) bool {
			return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.')
		}) {
			return Version{}, fmt.Errorf("bundle: version %q: bad prerelease", s)
		}
	}
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("bundle: version %q: want MAJOR.MINOR.PATCH", s)
	}
	var nums [3]uint32
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("bundle: version %q: bad number %q", s, p)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("bundle: version %q: %w", s, err)
		}
		nums[i] = uint32(n)
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// String formats v without a leading "v".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
// A prerelease is older than its release; prereleases compare as strings.
func (v Version) Compare(w Version) int {
	for _, d := range [...][2]uint32{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == w.Pre:
		return 0
	case v.Pre == "":
		return 1
	case w.Pre == "":
		return -1
	case v.Pre < w.Pre:
		return -1
	default:
		return 1
	}
}
