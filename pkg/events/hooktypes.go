package events

import "strings"

// reservedSubjectPrefixes are the subject spaces a subject hook may not
// publish to: the bus's own (a hook would loop into it, or forge commands
// and answers), the server's APIs, and inboxes.
var reservedSubjectPrefixes = []struct{ prefix, why string }{
	{SubjectRoot + ".", "the bus's own subjects (events would loop back, commands and answers could be forged)"},
	{"_INBOX.", "reply inboxes belong to the requests that made them"},
	{"$", "subjects starting with $ are the NATS server's APIs ($JS, $KV, $O, $SYS, $MQTT ...)"},
}

// ValidateHookSubject reports whether subject may be a subject hook's
// target: a literal NATS subject (tokens of printable ASCII other than
// '*' and '>', separated by '.') outside the reserved spaces (hookbus.,
// _INBOX. and every subject starting with $). The error is a
// *ValidationError.
func ValidateHookSubject(subject string) error {
	if subject == "" {
		return invalidIn("hook", "arg", "a subject hook needs the NATS subject to publish to")
	}
	for i, tok := range strings.Split(subject, ".") {
		if tok == "" {
			return invalidIn("hook", "arg", "subject %q has an empty token (at token %d)", subject, i+1)
		}
		for _, r := range tok {
			switch {
			case r == '*' || r == '>':
				return invalidIn("hook", "arg", "subject %q has a wildcard: a hook publishes to one literal subject", subject)
			case r <= ' ' || r >= 0x7f:
				return invalidIn("hook", "arg", "subject %q: token %q has a space, a control or a non-ASCII character", subject, tok)
			}
		}
	}
	for _, r := range reservedSubjectPrefixes {
		if strings.HasPrefix(subject+".", r.prefix) {
			return invalidIn("hook", "arg", "subject %q is reserved: %s; publish under another prefix, such as hooks.", subject, r.why)
		}
	}
	return nil
}

// ValidateExecPath reports whether path may be an exec hook's program: a
// path relative to the operator's exec directory, of '/'-separated
// elements none of which is empty, "." or "..". Whether the program
// exists is for the registry and the dispatcher to check. The error is a
// *ValidationError.
func ValidateExecPath(path string) error {
	switch {
	case path == "":
		return invalidIn("hook", "arg", "an exec hook needs the path of its program, relative to the exec directory")
	case strings.HasPrefix(path, "/"):
		return invalidIn("hook", "arg", "%q is absolute: give the program's path relative to the exec directory", path)
	case strings.ContainsFunc(path, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }):
		return invalidIn("hook", "arg", "%q has a control character or a backslash", path)
	}
	for _, el := range strings.Split(path, "/") {
		switch el {
		case "":
			return invalidIn("hook", "arg", "%q has an empty path element", path)
		case ".", "..":
			return invalidIn("hook", "arg", "%q has a %q element: give a plain path inside the exec directory", path, el)
		}
	}
	return nil
}

// MaxHookTimeout is the longest settings.timeout_ms a hook may set.
const MaxHookTimeout = maxHookTimeout
