package gateway

// TokenCount returns how many tokens (each with its rate limiter) s holds.
func TokenCount(s *Service) int { return s.tokens.size() }

// HasToken reports whether s took the token name from the bucket.
func HasToken(s *Service, name string) bool { return s.tokens.get(name) != nil }
