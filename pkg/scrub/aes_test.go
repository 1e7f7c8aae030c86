package scrub

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSbox(t *testing.T) {
	sb := newAESTables().sbox
	// FIPS-197 Figure 7 and 5.1.1's example (S(53) = ed).
	for in, want := range map[byte]byte{0x00: 0x63, 0x01: 0x7c, 0x53: 0xed, 0xff: 0x16, 0x10: 0xca, 0x9a: 0xb8} {
		if sb[in] != want {
			t.Errorf("S(%02x) = %02x, want %02x", in, sb[in], want)
		}
	}
	seen := map[byte]bool{}
	for _, v := range sb {
		seen[v] = true
	}
	if len(seen) != 256 {
		t.Errorf("S-box is not a permutation: %d values", len(seen))
	}
}

// TestExpandFIPS197 checks the key expansion examples of FIPS-197
// Appendix A: the words of the first and last rounds.
func TestExpandFIPS197(t *testing.T) {
	tab := newAESTables()
	for _, tc := range []struct {
		key         string
		second      string // the round key after the key's own words
		secondAt    int    // its word index
		last        string // the last round key
		wantRounds  int
		description string
	}{
		{"2b7e151628aed2a6abf7158809cf4f3c", "a0fafe1788542cb123a339392a6c7605", 4,
			"d014f9a8c9ee2589e13f0cc8b6630ca6", 10, "A.1 AES-128"},
		{"8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", "fe0c91f72402f5a5ec12068e6c827f6b", 6,
			"e98ba06f448c773c8ecc720401002202", 12, "A.2 AES-192"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "9ba354118e6925afa51a8b5f2067fcde", 8,
			"fe4890d1e6188d0b046df344706c631e", 14, "A.3 AES-256"},
	} {
		key := unhex(t, tc.key)
		enc, dec, err := tab.expand(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != 16*(tc.wantRounds+1) || len(dec) != len(enc) {
			t.Fatalf("%s: schedules of %d and %d bytes, want %d", tc.description, len(enc), len(dec), 16*(tc.wantRounds+1))
		}
		if !bytes.Equal(enc[:len(key)], key) {
			t.Errorf("%s: the schedule does not start with the key", tc.description)
		}
		if got := hex.EncodeToString(enc[4*tc.secondAt : 4*tc.secondAt+16]); got != tc.second {
			t.Errorf("%s: w[%d..] = %s, want %s", tc.description, tc.secondAt, got, tc.second)
		}
		if got := hex.EncodeToString(enc[len(enc)-16:]); got != tc.last {
			t.Errorf("%s: last round key %s, want %s", tc.description, got, tc.last)
		}
		// The kernel's key_dec begins with the last round key and ends
		// with the first, both without InvMixColumns.
		if !bytes.Equal(dec[:16], enc[len(enc)-16:]) || !bytes.Equal(dec[len(dec)-16:], enc[:16]) {
			t.Errorf("%s: decryption schedule's ends are not the encryption schedule's, swapped", tc.description)
		}
	}
	if _, _, err := tab.expand(make([]byte, 20)); err == nil {
		t.Error("a 20-byte key was expanded")
	}
}

// TestSchedulesAgainstCryptoAES runs a plain FIPS-197 cipher (written here,
// independent of the expansion) with the encryption schedule, and the
// Equivalent Inverse Cipher (FIPS-197 5.3.5) with the decryption schedule,
// and compares both with crypto/aes: the schedules are the real ones, in
// the layout the kernel's decryption walks (round keys first to last).
func TestSchedulesAgainstCryptoAES(t *testing.T) {
	tab := newAESTables()
	var inv [256]byte
	for i, v := range tab.sbox {
		inv[v] = byte(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{16, 24, 32} {
		for range 20 {
			key, block := make([]byte, n), make([]byte, 16)
			fill(rng, key)
			fill(rng, block)
			enc, dec, err := tab.expand(key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 16)
			c.Encrypt(want, block)
			if got := refEncrypt(&tab.sbox, enc, block); !bytes.Equal(got, want) {
				t.Fatalf("AES-%d: encryption with the schedule gives %x, crypto/aes %x", 8*n, got, want)
			}
			c.Decrypt(want, block)
			if got := refDecrypt(&inv, dec, block); !bytes.Equal(got, want) {
				t.Fatalf("AES-%d: equivalent inverse cipher with the schedule gives %x, crypto/aes %x", 8*n, got, want)
			}
		}
	}
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// The state is FIPS-197's: byte r+4c is row r of column c.

func refEncrypt(sbox *[256]byte, rk, in []byte) []byte {
	rounds := len(rk)/16 - 1
	s := xorBlock(in, rk[:16])
	for r := 1; r <= rounds; r++ {
		for i := range s {
			s[i] = sbox[s[i]]
		}
		s = shiftRows(s, 1)
		if r != rounds {
			for c := 0; c < 16; c += 4 {
				mixColumn(s[c : c+4])
			}
		}
		s = xorBlock(s, rk[16*r:16*r+16])
	}
	return s
}

func refDecrypt(inv *[256]byte, dk, in []byte) []byte {
	rounds := len(dk)/16 - 1
	s := xorBlock(in, dk[:16])
	for r := 1; r <= rounds; r++ {
		for i := range s {
			s[i] = inv[s[i]]
		}
		s = shiftRows(s, 3) // InvShiftRows: right by the row number
		if r != rounds {
			// InvMixColumns is MixColumns three times (its fourth power
			// is the identity), so the code under test is not used here.
			for c := 0; c < 16; c += 4 {
				for range 3 {
					mixColumn(s[c : c+4])
				}
			}
		}
		s = xorBlock(s, dk[16*r:16*r+16])
	}
	return s
}

func xorBlock(a, b []byte) []byte {
	out := make([]byte, 16)
	for i := range out {
		out[i] = a[i] ^ b[i]
	}
	return out
}

// shiftRows moves row r left by k*r columns.
func shiftRows(s []byte, k int) []byte {
	out := make([]byte, 16)
	for r := range 4 {
		for c := range 4 {
			out[r+4*c] = s[r+4*((c+k*r)%4)]
		}
	}
	return out
}

func mixColumn(col []byte) {
	a0, a1, a2, a3 := col[0], col[1], col[2], col[3]
	col[0] = gmul(a0, 2) ^ gmul(a1, 3) ^ a2 ^ a3
	col[1] = a0 ^ gmul(a1, 2) ^ gmul(a2, 3) ^ a3
	col[2] = a0 ^ a1 ^ gmul(a2, 2) ^ gmul(a3, 3)
	col[3] = gmul(a0, 3) ^ a1 ^ a2 ^ gmul(a3, 2)
}
