package mutex

// Every Redis key the mutex owns is built here; docs/mutex.md lists them.

// keys of one lock. The name sits in a hash tag, so that every key of a
// lock lands in one Redis Cluster slot whatever characters the name holds:
// the suffixes all come after the tag's closing brace.
type keys struct {
	lock, fence, queue, leases, channel, released string
}

func (c *Client) keys(name string) keys {
	base := c.prefix + ":lock:{" + name + "}"
	return keys{
		lock:    base,
		fence:   base + ":fence",
		queue:   base + ":queue",
		leases:  base + ":queue-expiry",
		channel: base + ":released",
		// released is a string key, the channel above a pub/sub name:
		// they live in different namespaces.
		released: base + ":rel",
	}
}
