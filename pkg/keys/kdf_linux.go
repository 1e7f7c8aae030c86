package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoKernelHMAC means the kernel cannot compute an HMAC keyed by a keyring
// key: it lacks AF_ALG hash sockets (CONFIG_CRYPTO_USER_API_HASH) or
// ALG_SET_KEY_BY_KEY_SERIAL (Linux 6.2+).
var ErrNoKernelHMAC = errors.New("kernel cannot compute an HMAC with a keyring key")

// ErrTooSlow means PBKDF2 was stopped at its time limit.
var ErrTooSlow = errors.New("stopped at the time limit")

// PBKDF2 computes PBKDF2-HMAC-<hash>(password, salt, iter, keyLen) where the
// password is the payload of the keyring key serial. It exists for logon
// keys, which userspace cannot read: the kernel computes each HMAC with the
// key through an AF_ALG socket, so a logon key can still be checked against
// a LUKS digest without its bytes ever reaching this process.
//
// It gives up once limit has passed (0: no limit): a header asking for
// 2^32 iterations must not hold "ukdump load" for hours.
func PBKDF2(serial int, hash string, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error) {
	alg := map[string]string{"sha1": "hmac(sha1)", "sha256": "hmac(sha256)", "sha512": "hmac(sha512)"}[hash]
	if alg == "" {
		return nil, fmt.Errorf("keys: PBKDF2 with %q is not supported", hash)
	}
	if iter < 1 || keyLen < 1 {
		return nil, fmt.Errorf("keys: PBKDF2: bad parameters (%d iterations, %d bytes)", iter, keyLen)
	}
	h, err := newKernelHMAC(alg, serial)
	if err != nil {
		return nil, err
	}
	defer h.close()

	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	var out []byte
	defer func() { Wipe(out[min(keyLen, len(out)):]) }()
	msg := make([]byte, len(salt)+4)
	copy(msg, salt)
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(msg[len(salt):], block)
		u, err := h.sum(msg)
		if err != nil {
			return nil, err
		}
		t := append([]byte(nil), u...)
		for i := 1; i < iter; i++ {
			if i&1023 == 0 && !deadline.IsZero() && time.Now().After(deadline) {
				Wipe(t)
				Wipe(out)
				return nil, fmt.Errorf("keys: PBKDF2 with %d iterations: %w after %d in %s", iter, ErrTooSlow, i, limit)
			}
			if u, err = h.sum(u); err != nil {
				return nil, err
			}
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
		Wipe(t)
	}
	return out[:keyLen], nil
}

// kernelHMAC is an AF_ALG operation socket for one keyed HMAC.
type kernelHMAC struct {
	tfm, op int
	digest  []byte
}

func newKernelHMAC(alg string, serial int) (*kernelHMAC, error) {
	tfm, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("keys: %w: %w", ErrNoKernelHMAC, err)
	}
	h := &kernelHMAC{tfm: tfm, op: -1}
	if err := unix.Bind(tfm, &unix.SockaddrALG{Type: "hash", Name: alg}); err != nil {
		h.close()
		return nil, fmt.Errorf("keys: %s: %w: %w", alg, ErrNoKernelHMAC, err)
	}
	s := int32(serial)
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(tfm), unix.SOL_ALG, unix.ALG_SET_KEY_BY_KEY_SERIAL,
		uintptr(unsafe.Pointer(&s)), unsafe.Sizeof(s), 0)
	if errno != 0 {
		h.close()
		if errno == unix.ENOPROTOOPT || errno == unix.EINVAL {
			return nil, fmt.Errorf("keys: %w: %w", ErrNoKernelHMAC, errno)
		}
		return nil, fmt.Errorf("keys: key %d for %s: %w", serial, alg, errno)
	}
	op, _, errno := unix.Syscall(unix.SYS_ACCEPT4, uintptr(tfm), 0, 0)
	if errno != 0 {
		h.close()
		return nil, fmt.Errorf("keys: %s: accept: %w", alg, errno)
	}
	h.op = int(op)
	h.digest = make([]byte, 64)
	return h, nil
}

// sum returns HMAC(key, msg). The returned slice is reused by the next call.
func (h *kernelHMAC) sum(msg []byte) ([]byte, error) {
	if _, err := unix.Write(h.op, msg); err != nil {
		return nil, fmt.Errorf("keys: hmac: %w", err)
	}
	n, err := unix.Read(h.op, h.digest)
	if err != nil {
		return nil, fmt.Errorf("keys: hmac: %w", err)
	}
	return h.digest[:n], nil
}

func (h *kernelHMAC) close() {
	if h.op >= 0 {
		unix.Close(h.op)
	}
	unix.Close(h.tfm)
	Wipe(h.digest)
}
