package endpoint

// ResetHostCache empties the host cache, for tests that count lookups.
func ResetHostCache() {
	hosts.mu.Lock()
	defer hosts.mu.Unlock()
	clear(hosts.addrs)
}
