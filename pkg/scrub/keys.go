package scrub

// Keys holds the volume keys from the moment unlocking has checked them
// until the dump is written, for the Scrubber. kdumpinit owns it and wipes
// it on every path; a nil *Keys keeps nothing.
//
// The keys stay in ordinary Go memory: the crash kernel has no swap, so
// locking them in memory (mlock) would change nothing, and Go's collector
// does not move them. Add copies each key once into a slice of its own
// size, so Wipe reaches every copy Keys made.
type Keys struct {
	vols []Volume
}

// Add keeps a copy of key, used with the dm-crypt cipher spec cipher.
func (k *Keys) Add(cipher string, key []byte) {
	if k == nil {
		return
	}
	k.vols = append(k.vols, Volume{Cipher: cipher, Key: clone(key)})
}

// Volumes returns the keys kept, in the order they were added. The slices
// are Keys' own: Wipe overwrites them.
func (k *Keys) Volumes() []Volume {
	if k == nil {
		return nil
	}
	return k.vols
}

// Len is the number of keys kept.
func (k *Keys) Len() int { return len(k.Volumes()) }

// Wipe overwrites every key kept and forgets them.
func (k *Keys) Wipe() {
	if k == nil {
		return
	}
	for _, v := range k.vols {
		wipe(v.Key)
	}
	k.vols = nil
}
