package qemu

import (
	"bytes"
	"testing"
)

func TestConsoleCleansOutput(t *testing.T) {
	// As captured from SeaBIOS and the Debian kernel on the serial port.
	raw := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n" +
		"Probing EDD... ok\r\n\x1bc\x1b[?7l\x1b[2J[    0.000000] Linux version 6.1\r\n" +
		"bad \x1b[1\x1bcend\r\n"
	want := "SeaBIOS (version 1.16.2)\nProbing EDD... ok\n[    0.000000] Linux version 6.1\nbad end\n"
	// Byte-at-a-time writes check that state survives split sequences.
	for _, chunk := range []int{len(raw), 1, 3} {
		var live bytes.Buffer
		c := newConsole(&live)
		for i := 0; i < len(raw); i += chunk {
			p := []byte(raw[i:min(i+chunk, len(raw))])
			if n, err := c.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if got := c.String(); got != want {
			t.Errorf("chunk %d: console = %q, want %q", chunk, got, want)
		}
		if live.String() != want {
			t.Errorf("chunk %d: live = %q, want %q", chunk, live.String(), want)
		}
	}
}
