package gateway

// TokenCount returns how many tokens (each with its rate limiter) s holds.
func TokenCount(s *Service) int { return s.tokens.size() }

// HasToken reports whether s took the token name from the bucket.
func HasToken(s *Service, name string) bool { return s.tokens.get(name) != nil }

// SetPushFault makes f see every live device push before a session
// buffers it (drop: lost as core NATS may lose it; overflow: dropped as by
// a full buffer) until the test ends.
func SetPushFault(t interface{ Cleanup(func()) }, f func(seq uint64) (drop, overflow bool)) {
	pushFault.Store(&f)
	t.Cleanup(func() { pushFault.Store(nil) })
}

// SetSessionFault makes f run in every device session right after it took
// its session id, until the test ends.
func SetSessionFault(t interface{ Cleanup(func()) }, f func(id string)) {
	sessionFault.Store(&f)
	t.Cleanup(func() { sessionFault.Store(nil) })
}
