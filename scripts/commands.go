package scripts

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

var (
	//go:embed linkguard.service
	systemdUnit string
	//go:embed linkguard.procd
	procdScript string
)

// SystemdCommand is the command line the systemd unit starts: its
// ExecStart, split into words.
func SystemdCommand() ([]string, error) {
	for _, l := range strings.Split(systemdUnit, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			return shellWords(v, nil)
		}
	}
	return nil, fmt.Errorf("scripts: linkguard.service has no ExecStart")
}

var assignment = regexp.MustCompile(`^([A-Z_]+)=(\S*)$`)

// ProcdCommand is the command line the procd script starts (its
// `procd_set_param command`), with the script's variables expanded.
// scripts' test holds it to what sh makes of the script.
func ProcdCommand() ([]string, error) {
	vars := map[string]string{}
	for _, l := range strings.Split(procdScript, "\n") {
		l = strings.TrimSpace(l)
		if m := assignment.FindStringSubmatch(l); m != nil {
			vars[m[1]] = m[2]
		}
		if v, ok := strings.CutPrefix(l, "procd_set_param command "); ok {
			return shellWords(v, vars)
		}
	}
	return nil, fmt.Errorf("scripts: linkguard.procd sets no command")
}

// shellWords splits a line into words as sh would for the plain forms the
// init files use: spaces, double quotes, and $NAME expanded from vars.
func shellWords(line string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case ch == '"':
			quoted, inWord = !quoted, true
		case (ch == ' ' || ch == '\t') && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case ch == '$':
			j := i + 1
			for j < len(line) && (line[j] == '_' || line[j] >= 'A' && line[j] <= 'Z') {
				j++
			}
			v, ok := vars[line[i+1:j]]
			if !ok {
				return nil, fmt.Errorf("scripts: %q: $%s is not set in the script", line, line[i+1:j])
			}
			w.WriteString(v)
			i, inWord = j-1, true
		case ch == '\\' || ch == '\'' || ch == '`':
			return nil, fmt.Errorf("scripts: %q: quoting beyond double quotes", line)
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("scripts: %q: unterminated quote", line)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
