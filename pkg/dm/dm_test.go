package dm

import (
	"strings"
	"testing"
)

func TestWithoutSectorSize(t *testing.T) {
	got := withoutSectorSize([]string{"allow_discards", "sector_size:4096", "iv_large_sectors"})
	if strings.Join(got, " ") != "allow_discards iv_large_sectors" {
		t.Errorf("got %v", got)
	}
}

func TestCreateCryptRefusesKeyBytes(t *testing.T) {
	if _, err := CreateCrypt(Crypt{Name: "x", KeyRef: "00112233"}); err == nil || !strings.Contains(err.Error(), "keyring reference") {
		t.Errorf("hex key accepted: %v", err)
	}
}
