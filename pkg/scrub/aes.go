package scrub

import "fmt"

// The AES key schedules, in the bytes the Linux kernel keeps them.
//
// Every AES implementation a dm-crypt volume uses on x86_64 keeps the
// expanded key as struct crypto_aes_ctx {u32 key_enc[60]; u32 key_dec[60];
// u32 key_length;} (Linux 6.1 to 6.x: lib/crypto/aes.c aes_expandkey, the
// AES-NI glue's aesni_set_key, the XTS glue's two contexts) or, from the
// 2026 library rework, as struct aes_key's rndkeys and inv_rndkeys, which
// lib/crypto/x86/aes.h calls "compatible between" the generic and the AES-NI
// expansion. Either way:
//
//   - key_enc holds the round keys of FIPS-197 as u32 words loaded with
//     get_unaligned_le32 from the key and computed with S-box and rcon in
//     the same little-endian form, so its bytes in memory are the FIPS-197
//     round-key bytes in order, round 0 (the key itself) first;
//   - key_dec holds the Equivalent Inverse Cipher's round keys: the
//     encryption round keys in reverse round order, with InvMixColumns
//     applied to all but the first and the last (AES-NI's aesimc gives the
//     same bytes).
//
// Only the 16*(rounds+1) bytes each schedule uses are patterns: for
// AES-128 and AES-192 the rest of the 240-byte arrays is whatever the
// allocation held.

// aesTables are the S-box and GF(2^8) helpers, computed on each use rather
// than kept in package variables.
type aesTables struct {
	sbox [256]byte
}

// newAESTables computes the S-box from its definition (FIPS-197 5.1.1):
// the multiplicative inverse in GF(2^8), then the affine map.
func newAESTables() *aesTables {
	var exp, log [256]byte
	p := byte(1)
	for i := range 255 {
		exp[i] = p
		log[p] = byte(i)
		p ^= xtime(p) // times 3, a generator of the multiplicative group
	}
	t := &aesTables{}
	for a := range 256 {
		var inv byte
		if a != 0 {
			inv = exp[(255-int(log[a]))%255]
		}
		t.sbox[a] = inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^ rotl8(inv, 4) ^ 0x63
	}
	return t
}

func rotl8(b byte, n uint) byte { return b<<n | b>>(8-n) }

// xtime multiplies by x (2) in GF(2^8) modulo x^8+x^4+x^3+x+1.
func xtime(b byte) byte {
	if b&0x80 != 0 {
		return b<<1 ^ 0x1b
	}
	return b << 1
}

// gmul multiplies in GF(2^8).
func gmul(a, b byte) byte {
	var p byte
	for ; b != 0; b >>= 1 {
		if b&1 != 0 {
			p ^= a
		}
		a = xtime(a)
	}
	return p
}

// aesKeySize reports whether n bytes is an AES key.
func aesKeySize(n int) bool { return n == 16 || n == 24 || n == 32 }

// expand returns the encryption and decryption schedules of an AES key,
// each 16*(rounds+1) bytes in the kernel's byte layout (see above).
func (t *aesTables) expand(key []byte) (enc, dec []byte, err error) {
	if !aesKeySize(len(key)) {
		return nil, nil, fmt.Errorf("%d-byte AES key", len(key))
	}
	nk := len(key) / 4
	rounds := nk + 6
	words := 4 * (rounds + 1)
	enc = make([]byte, 4*words)
	copy(enc, key)
	rcon := byte(1)
	var tmp [4]byte
	for i := nk; i < words; i++ {
		copy(tmp[:], enc[4*(i-1):4*i])
		switch {
		case i%nk == 0:
			// RotWord, SubWord, then rcon into the first byte.
			tmp[0], tmp[1], tmp[2], tmp[3] = t.sbox[tmp[1]]^rcon, t.sbox[tmp[2]], t.sbox[tmp[3]], t.sbox[tmp[0]]
			rcon = xtime(rcon)
		case nk > 6 && i%nk == 4:
			for k := range tmp {
				tmp[k] = t.sbox[tmp[k]]
			}
		}
		for k := range 4 {
			enc[4*i+k] = enc[4*(i-nk)+k] ^ tmp[k]
		}
	}
	wipe(tmp[:])
	dec = make([]byte, len(enc))
	for r := 0; r <= rounds; r++ {
		src := enc[16*(rounds-r) : 16*(rounds-r+1)]
		dst := dec[16*r : 16*(r+1)]
		if r == 0 || r == rounds {
			copy(dst, src)
			continue
		}
		for c := 0; c < 16; c += 4 {
			invMixColumn(dst[c:c+4], src[c:c+4])
		}
	}
	return enc, dec, nil
}

// invMixColumn applies InvMixColumns (FIPS-197 5.3.3) to one column.
func invMixColumn(dst, src []byte) {
	a0, a1, a2, a3 := src[0], src[1], src[2], src[3]
	dst[0] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9)
	dst[1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13)
	dst[2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11)
	dst[3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14)
}
