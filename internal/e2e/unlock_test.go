package e2e

import (
	"context"
	"crypto/aes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/xts"

	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/luks"
)

// TestUnlockMatrix is the proof that ukdump's initramfs hook never stops a
// volume from unlocking: Debian 12's cryptroot (cryptsetup 2.6) and Debian
// 13's (2.7) open a volume of every kind crypttab can describe (LUKS1,
// LUKS2, LUKS2 in reencryption, a detached header, plain dm-crypt, key
// files, the decrypt_keyctl keyscript, a typed passphrase, and a key file
// with the wrong passphrase), once from the initramfs Debian builds and
// once from the one built with the hook (testdata/debian/
// build-unlock-matrix.sh). The same volumes must open, on the first try,
// and the wrong one fail, in both; with the hook, every LUKS volume's key
// is in its dm-crypt table.
func TestUnlockMatrix(t *testing.T) {
	t.Parallel()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "cryptsetup")
	for _, suite := range []string{"bookworm", "trixie"} {
		t.Run(suite, func(t *testing.T) {
			t.Parallel()
			dir, read := imageDir(t, "build-unlock-matrix.sh", suite, "../../packaging/initramfs-tools/ukdump")
			m := unlockMatrix{dir: dir, release: read("release"), disks: strings.Fields(read("disks"))}
			for _, variant := range []string{"debian", "ukdump"} {
				t.Run(variant, func(t *testing.T) {
					t.Parallel()
					m.boot(t, variant)
				})
			}
		})
	}
}

type unlockMatrix struct {
	dir, release string
	disks        []string
}

// matrixOpened are the mappings that must open with either initramfs.
var matrixOpened = []string{"m-detach", "m-kc1", "m-kc2", "m-luks1", "m-luks2", "m-plain", "m-reenc", "m-remote", "m-typed"}

// boot boots the initramfs variant ("debian" or "ukdump") on copies of the
// disks, types the two passphrases, and checks what opened.
func (m unlockMatrix) boot(t *testing.T, variant string) {
	dir := outDir(t)
	var disks []string
	for _, d := range m.disks {
		p := filepath.Join(dir, d)
		copyImage(t, filepath.Join(m.dir, d), p)
		if d == "plain.img" {
			encryptPlain(t, p, filepath.Join(m.dir, "keyfiles", "plain.key"))
		}
		disks = append(disks, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s := startSystem(t, ctx, qemuSystem{Kernel: filepath.Join(m.dir, "vmlinuz"), Initrd: filepath.Join(m.dir, "initrd-"+variant+".img"),
		// break=bottom: a shell once cryptroot has run and the root
		// filesystem (on m-typed) is mounted.
		Cmdline: "root=/dev/mapper/m-typed ro console=ttyS0 break=bottom",
		Disks:   disks, MemoryMiB: 1024, LogDir: dir})
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(m.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	start := time.Now()
	s.waitPrompt(`Caching passphrase for m-kc1: `, 10*time.Minute)
	s.vm.Send(read("kc.pass") + "\n")
	s.waitPrompt(`Please unlock disk m-remote: `, 10*time.Minute)
	s.vm.Send(read("remote.pass") + "\n")
	s.waitPrompt(`Please unlock disk m-typed: `, 10*time.Minute)
	s.vm.Send(read("typed.pass") + "\n")
	s.waitLine(`Spawning shell within the initramfs`, 10*time.Minute)
	s.waitBoot()
	unlocked := time.Since(start)

	report := &strings.Builder{}
	fmt.Fprintf(report, "Debian's cryptroot, kernel %s, initramfs %s: cryptroot done %.0f s after the first prompt\n", m.release, variant, unlocked.Seconds())
	fmt.Fprintf(report, "\n$ cryptsetup --version\n%s", s.run("cryptsetup --version"))
	mapped := strings.Fields(s.run("ls /dev/mapper"))
	opened := slices.DeleteFunc(slices.Clone(mapped), func(n string) bool {
		return !strings.HasPrefix(n, "m-") || strings.Contains(n, "-hotzone") || strings.Contains(n, "-overlay")
	})
	slices.Sort(opened)
	fmt.Fprintf(report, "opened: %s\n", strings.Join(opened, " "))
	if !slices.Equal(opened, matrixOpened) {
		t.Errorf("%s initramfs opened %v, want %v (m-wrong must fail)", variant, opened, matrixOpened)
	}
	console := s.vm.Console()
	for _, c := range []struct{ re, what string }{
		{`Please unlock disk m-typed`, "the typed passphrase asked once"},
		{`Please unlock disk m-remote`, "the other typed passphrase asked once"},
		{`Caching passphrase for m-kc1`, "decrypt_keyctl asked once"},
		{`Using cached passphrase for m-kc2`, "decrypt_keyctl used the cached passphrase for m-kc2"},
		{`m-wrong: cryptsetup failed, bad password or options\?`, "m-wrong refused once (tries=1)"},
	} {
		if n := len(regexp.MustCompile(c.re).FindAllString(console, -1)); n != 1 {
			t.Errorf("%s: %q appears %d times on the console, want once", c.what, c.re, n)
		}
	}
	if regexp.MustCompile(`m-(luks|reenc|detach|plain|kc|remote|typed)[a-z0-9]*: cryptsetup failed`).MatchString(console) {
		t.Errorf("a volume that opens failed once first:\n%s", console)
	}

	// Where each LUKS volume's key is: a hex key in its dm-crypt table,
	// or a keyring reference.
	tables := s.run("dmsetup table --showkeys")
	fmt.Fprintf(report, "\n$ dmsetup table --showkeys   (keys replaced by where they are)\n")
	headers := map[string]string{"m-luks1": "luks1.img", "m-luks2": "luks2.img", "m-reenc": "reenc.img", "m-detach": "detach-hdr.img",
		"m-kc1": "kc1.img", "m-kc2": "kc2.img", "m-remote": "remote.img", "m-typed": "typed.img"}
	inTable := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(tables), "\n") {
		name, table, _ := strings.Cut(l, ": ")
		f := strings.Fields(table)
		if len(f) < 5 || f[2] != "crypt" {
			fmt.Fprintf(report, "%s\n", l)
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(name, "-hotzone-forward"), "-hotzone-backward")
		where := "a keyring reference " + f[4]
		if !keys.IsReference(f[4]) {
			where = "a hex key"
			if img, ok := headers[base]; ok {
				key, err := hex.DecodeString(f[4])
				h, herr := luks.ReadFile(filepath.Join(m.dir, img))
				switch {
				case err != nil || herr != nil:
					t.Errorf("%s: key field: %v, header: %v", name, err, herr)
				case h.VerifyKey(key) == nil:
					where = "the volume key in the table (it matches the LUKS digest)"
					inTable[base] = true
				case base != "m-reenc":
					t.Errorf("%s: the key in the table is not the volume key", name)
				}
				keys.Wipe(key)
			}
		}
		f[4] = "<" + where + ">"
		fmt.Fprintf(report, "%s: %s\n", name, strings.Join(f, " "))
	}
	for base := range headers {
		switch {
		case base == "m-reenc":
			// Two volume keys, two digests; either is checked above.
		case variant == "ukdump" && !inTable[base]:
			t.Errorf("with ukdump's hook, %s's key is not in its dm-crypt table", base)
		case variant == "debian" && base == "m-luks1" && !inTable[base]:
			t.Errorf("LUKS1 keeps its key in the table, but m-luks1's is not there")
		}
	}
	if variant == "ukdump" && strings.Contains(tables, ":logon:") {
		t.Errorf("with ukdump's hook, a LUKS volume kept its key in the keyring:\n%s", tables)
	}
	if variant == "debian" && !strings.Contains(tables, ":logon:cryptsetup:") {
		t.Errorf("Debian's own initramfs keeps LUKS2 keys in the keyring, but no table references one: the control shows nothing")
	}

	// A remote unlock, as over dropbear's ssh: m-remote closed, cryptroot
	// run again on the console, where it asks for m-remote, and meanwhile
	// cryptroot-unlock in the background, without a terminal as ssh runs
	// it with a piped passphrase: it finds the waiting cryptsetup by its
	// binary and its CRYPTTAB_NAME, and hands the passphrase to askpass's
	// fifo. (ukdump 0.1's wrapper hid cryptsetup from it.) One typed line,
	// read whole by the shell before askpass takes the console.
	s.run("cryptsetup close m-remote")
	out, rc := s.status("(sleep 15; printf '%s' '" + strings.TrimSpace(read("remote.pass")) + "' | cryptroot-unlock >/run/cu.log 2>&1; " +
		"echo \"cryptroot-unlock: exit $?\" >>/run/cu.log) </dev/null & /scripts/local-top/cryptroot >/run/cryptroot-again.log 2>&1; cat /run/cu.log")
	fmt.Fprintf(report, "\n$ cryptsetup close m-remote; cryptroot (again, on the console) & cryptroot-unlock (in the background)\n%s", out)
	if !strings.Contains(out, "m-remote set up successfully") || !strings.Contains(out, "cryptroot-unlock: exit 0") ||
		!strings.Contains(s.run("ls /dev/mapper"), "m-remote") {
		t.Errorf("%s initramfs: cryptroot-unlock did not open m-remote (exit %d):\n%s\n%s", variant, rc, out, s.run("cat /run/cryptroot-again.log"))
	}
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report.String()), 0o644)
	t.Logf("report:\n%s", report)
}

// encryptPlain encrypts the image in place as plain dm-crypt
// (aes-xts-plain64, 512-byte sectors, the IV the sector number) with the
// key file's bytes as the key, which is what cryptsetup open --type plain
// --key-file makes of a key file (no hash).
func encryptPlain(t *testing.T, image, keyFile string) {
	t.Helper()
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+512 <= len(b); i += 512 {
		c.Encrypt(b[i:i+512], b[i:i+512], uint64(i/512))
	}
	if err := os.WriteFile(image, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
