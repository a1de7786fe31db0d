package mutex

import (
	"context"
	"errors"
	"testing"
)

// TestKeysShareASlot: every key of one lock hashes to one Redis Cluster
// slot, whatever the name holds, so the scripts work on a cluster.
func TestKeysShareASlot(t *testing.T) {
	c := New(nil, WithPrefix("jobd"))
	for _, name := range []string{"db-maintenance", "EmitAccessToken:42", "a}b", "{x}", "we{ird", "x}}", "é"} {
		t.Run(name, func(t *testing.T) {
			if err := ValidName(name); err != nil {
				t.Fatal(err)
			}
			k := c.keys(name)
			want := slot(k.lock)
			for _, key := range []string{k.fence, k.queue, k.leases, k.channel, k.released("0123456789abcdef")} {
				if got := slot(key); got != want {
					t.Errorf("%s: slot %d, %s: slot %d", k.lock, want, key, got)
				}
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"", "}x"} {
		if err := ValidName(name); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidName(%q) = %v, want ErrBadName", name, err)
		}
		if err := New(nil).NewMutex(name).TryLock(context.Background()); !errors.Is(err, ErrBadName) {
			t.Errorf("TryLock(%q) = %v, want ErrBadName", name, err)
		}
	}
}

// slot is Redis Cluster's HASH_SLOT: CRC16/XMODEM of the hash tag (the
// part between the first '{' and the next '}', if not empty) mod 16384.
func slot(key string) uint16 {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
