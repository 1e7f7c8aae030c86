package loader

import (
	"errors"
	"fmt"
	"os"

	"github.com/ukdump/ukdump/pkg/keys"
)

// maxPassphrase bounds a passphrase or key file read for a keyslot, as
// cryptsetup's default keyfile-size limit does (8 MiB there; a passphrase
// for ukdump is typed or scripted, so 8 KiB is plenty).
const maxPassphrase = 8 << 10

// passphrases hands out the passphrase of each volume. A key file (or
// standard input) is read once, into one buffer that is wiped when the
// load ends, and serves every volume: standard input can be read only
// once, and a second volume must not get an empty passphrase. A prompt
// asks per volume; each answer is wiped by wipe too.
type passphrases struct {
	o    KeyOptions
	file []byte // the key file's passphrase, once read
	read bool
	held [][]byte
}

func (p *passphrases) get(v Volume) ([]byte, error) {
	switch {
	case p.o.KeyFile != "":
		if !p.read {
			b, err := readKeyFile(p.o.KeyFile)
			if err != nil {
				return nil, err
			}
			p.file, p.read = b, true
		}
		return p.file, nil
	case p.o.Prompt != nil:
		b, err := p.o.Prompt(v)
		if err != nil {
			return nil, err
		}
		p.held = append(p.held, b)
		return b, nil
	}
	return nil, errors.New("no passphrase (give --key-file, or run on a terminal)")
}

// wipe clears every passphrase handed out.
func (p *passphrases) wipe() {
	keys.Wipe(p.file)
	for _, b := range p.held {
		keys.Wipe(b)
	}
	p.file, p.held = nil, nil
}

// fromFile reports whether the passphrases come from a key file.
func (p *passphrases) fromFile() bool { return p != nil && p.o.KeyFile != "" }

// readKeyFile reads a passphrase ("-": standard input) into one buffer
// owned here: io.ReadAll and os.ReadFile grow their buffers by copying,
// leaving earlier copies nobody can wipe. Every byte is the passphrase,
// a final newline too, as cryptsetup reads --key-file (the file or "-"):
// a key file that opens the volume with cryptsetup opens it here.
func readKeyFile(name string) ([]byte, error) {
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		defer f.Close()
	}
	b, err := keys.ReadSecret(f, maxPassphrase)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	return b, nil
}
