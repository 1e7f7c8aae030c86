package keys

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testSeal is a seal of the test's own, beside ukdump's in root's user
// keyring.
func testSeal(t *testing.T) Seal {
	s := Seal{Ring: testDesc(t) + ":ring", UID: SealUID}
	t.Cleanup(func() {
		if err := s.Forget(); err != nil {
			t.Errorf("Forget: %v", err)
		}
	})
	return s
}

// userKeyInUserKeyring adds a user key to root's user keyring, as
// systemd-cryptsetup's link-volume-key= does, and skips the test where
// this process cannot read it back (it must possess root's user keyring
// through its session keyring, as ukdump.service does).
func userKeyInUserKeyring(t *testing.T, desc string, payload []byte) int {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("sealing needs root")
	}
	id, err := Add("user", desc, payload, UserKeyring)
	if err != nil {
		t.Skipf("no kernel keyring here: %v", err)
	}
	t.Cleanup(func() { unlink(id, UserKeyring) })
	if b, err := Read(id); err != nil {
		t.Skipf("this process does not possess root's user keyring (its session keyring does not link it): %v", err)
	} else {
		Wipe(b)
	}
	return id
}

func TestSealedKey(t *testing.T) {
	desc := testDesc(t)
	payload := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	id := userKeyInUserKeyring(t, desc, payload)
	s := testSeal(t)
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	// Out of root's user keyring, where systemd-cryptsetup links a new one.
	if _, err := unix.KeyctlSearch(UserKeyring, "user", desc, 0); !errors.Is(err, unix.ENOKEY) {
		t.Errorf("the sealed key is still in root's user keyring: %v", err)
	}
	// Not even this process, root with every capability, reads it the
	// plain way, nor finds it by search.
	if b, err := Read(id); err == nil {
		Wipe(b)
		t.Error("a sealed key was read with KEYCTL_READ")
	}
	if _, err := Find("user", desc); err == nil {
		t.Error("a sealed key was found by search")
	}
	d, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("user;%d;%d;%08x;%s", SealUID, SealUID, permSealed, desc); d != want {
		t.Errorf("sealed key: %q, want %q", d, want)
	}
	found, err := s.FindSealed(desc)
	if err != nil || found != id {
		t.Fatalf("FindSealed = %d, %v; want %d", found, err, id)
	}
	for i := 0; i < 2; i++ { // reading seals it again
		got, err := s.ReadSealed(id)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("ReadSealed #%d = %q, %v", i, got, err)
		}
		Wipe(got)
	}
	if d2, _ := unix.KeyctlString(unix.KEYCTL_DESCRIBE, id); d2 != d {
		t.Errorf("after ReadSealed: %q, want %q", d2, d)
	}
	if _, err := s.FindSealed(testDesc(t)); !errors.Is(err, ErrNotSealed) {
		t.Errorf("FindSealed of another description: %v, want ErrNotSealed", err)
	}

	// A uid-0 process without capabilities can neither read it, by its
	// serial or by ukdump's way, nor change its permissions or owner.
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv here to drop capabilities")
	}
	child := func(setpriv ...string) (string, error) {
		args := append(setpriv, os.Args[0], "-test.run=^TestSealedKeyCapless$")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "UKDUMP_SEALED_KEY="+strconv.Itoa(id), "UKDUMP_SEALED_DESC="+desc, "UKDUMP_SEAL_RING="+s.Ring)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := child("setpriv", "--bounding-set=-all"); strings.Contains(out, "Exec format error") {
		t.Skipf("the test binary cannot run itself here (under qemu-user): %v", err)
	}
	if out, err := child("setpriv", "--bounding-set=-all", "--inh-caps=-all"); err != nil || !strings.Contains(out, "capless: refused") {
		t.Errorf("capless child: %v\n%s", err, out)
	}
	if out, err := child("setpriv", "--bounding-set=-all,+setuid,+setgid", "--inh-caps=-all"); err != nil || !strings.Contains(out, "capless: refused") {
		t.Errorf("child with CAP_SETUID but not CAP_SYS_ADMIN: %v\n%s", err, out)
	}
	// The control: the same child with its capabilities reads the key
	// ukdump's way (so the refusals above are the capabilities').
	if out, err := child("setpriv", "--bounding-set=-all,+sys_admin,+setuid", "--inh-caps=-all"); err == nil || !strings.Contains(out, "ReadSealed gave 64 bytes") {
		t.Errorf("child with CAP_SYS_ADMIN and CAP_SETUID: %v, want it to read the key\n%s", err, out)
	}

	// A key of the same description sealed later replaces this one.
	id2 := userKeyInUserKeyring(t, desc, []byte("another key of 32 bytes, 1234567"))
	if err := s.Seal(id2); err != nil {
		t.Fatal(err)
	}
	if found, err := s.FindSealed(desc); err != nil || found != id2 {
		t.Errorf("after sealing a second key: FindSealed = %d, %v; want %d", found, err, id2)
	}
}

// TestSealedKeyCapless is the child of TestSealedKey, run with every
// capability dropped.
func TestSealedKeyCapless(t *testing.T) {
	v := os.Getenv("UKDUMP_SEALED_KEY")
	if v == "" {
		t.Skip("run by TestSealedKey")
	}
	id, _ := strconv.Atoi(v)
	s := Seal{Ring: os.Getenv("UKDUMP_SEAL_RING"), UID: SealUID}
	// A session keyring belongs to the thread that joins it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var leaks []string
	if b, err := Read(id); err == nil {
		leaks = append(leaks, fmt.Sprintf("KEYCTL_READ gave %d bytes", len(b)))
	}
	if b, err := s.ReadSealed(id); err == nil {
		leaks = append(leaks, fmt.Sprintf("ReadSealed gave %d bytes", len(b)))
	}
	// Linking root's user keyring into a private session keyring, which
	// the keyring's owner may always do, gives no possession of it.
	// (An anonymous session keyring: a name of NULL.)
	if _, err := unix.KeyctlInt(unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0); err != nil {
		leaks = append(leaks, fmt.Sprintf("could not join a session keyring to try: %v", err))
	} else if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, UserKeyring, SessionKeyring, 0, 0); err != nil {
		leaks = append(leaks, fmt.Sprintf("could not link @u into the session keyring to try: %v", err))
	} else {
		if b, err := Read(id); err == nil {
			leaks = append(leaks, fmt.Sprintf("KEYCTL_READ in a session keyring linking @u gave %d bytes", len(b)))
		}
		if _, err := unix.KeyctlSearch(SessionKeyring, "user", os.Getenv("UKDUMP_SEALED_DESC"), 0); err == nil {
			leaks = append(leaks, "found by search from a session keyring linking @u")
		}
	}
	// Nor as the owner, which a process with CAP_SETUID could become.
	sealThread(func(th *fsThread) error {
		if th.as(SealUID) == nil {
			if b, err := Read(id); err == nil {
				leaks = append(leaks, fmt.Sprintf("KEYCTL_READ as uid %d gave %d bytes", SealUID, len(b)))
			}
		}
		return nil
	})
	if err := unix.KeyctlSetperm(id, 0x3f3f3f3f); err == nil {
		leaks = append(leaks, "KEYCTL_SETPERM succeeded")
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_CHOWN, id, 0, 0, 0); err == nil {
		leaks = append(leaks, "KEYCTL_CHOWN succeeded")
	}
	if len(leaks) > 0 {
		t.Fatalf("capless: %s", strings.Join(leaks, "; "))
	}
	fmt.Println("capless: refused")
}
