package mutex

// Every Redis key the mutex owns is built here; docs/mutex.md lists them.

// keys of one lock. The name sits in a hash tag, so that every key of a
// lock lands in one Redis Cluster slot whatever characters the name holds:
// the suffixes all come after the tag's closing brace.
type keys struct {
	lock, fence, queue, leases, channel string
}

// released is the key that marks token's hold released (release.lua),
// one per token: "…:rel:TOKEN", a string key, in the lock's slot. The
// channel is a pub/sub name: they live in different namespaces.
func (k keys) released(token string) string { return k.lock + ":rel:" + token }

func (c *Client) keys(name string) keys {
	base := c.prefix + ":lock:{" + name + "}"
	return keys{
		lock:    base,
		fence:   base + ":fence",
		queue:   base + ":queue",
		leases:  base + ":queue-expiry",
		channel: base + ":released",
	}
}
