package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string:
// "500ms", "5s", "15m", "1h30m". A bare number is refused because its unit
// would be a guess.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration but without zero trailing units:
// "1h", "15m", "1m30s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil && s != "0" {
			return fmt.Errorf("invalid duration %q: add a unit, e.g. \"%ss\" or \"%sms\"", s, s, s)
		}
		return fmt.Errorf("invalid duration %q: write e.g. \"500ms\", \"5s\", \"15m\" or \"1h30m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written in TOML as an integer or a string with a
// binary unit: 4096, "512KiB", "10MiB", "2GiB". Decimal units (KB, MB, GB)
// are refused to avoid the 1000-or-1024 guess.
type Size int64

// Size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = []struct {
	name string
	mult Size
}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}

// String formats s with the largest binary unit that divides it exactly:
// "50MiB", "1536KiB", "1000".
func (s Size) String() string {
	if s != 0 {
		for _, u := range sizeUnits {
			if s%u.mult == 0 {
				return strconv.FormatInt(int64(s/u.mult), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// errSizeSyntax explains the accepted size syntax.
var errSizeSyntax = errors.New(`write a whole number of bytes or one with a unit, e.g. 65536, "512KiB", "10MiB", "1GiB"`)

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	num, mult := str, Size(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(str, u.name) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(str, u.name)), u.mult
			break
		}
	}
	if mult == 1 {
		// Name the likely slip: a decimal unit.
		for _, bad := range []string{"KB", "MB", "GB", "kB", "K", "M", "G", "B"} {
			if strings.HasSuffix(str, bad) {
				return fmt.Errorf("invalid size %q: use the binary units KiB, MiB or GiB", str)
			}
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || num == "" || num[0] == '+' {
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("invalid size %q: too large", str)
		}
		return fmt.Errorf("invalid size %q: %w", str, errSizeSyntax)
	}
	if n > uint64(math.MaxInt64/int64(mult)) {
		return fmt.Errorf("invalid size %q: too large", str)
	}
	*s = Size(n) * mult
	return nil
}

// StatusRange is an HTTP status or a range of them, written as an integer
// (200) or a string ("200", "200-399"): check.expect_status.
type StatusRange struct{ Lo, Hi int }

// Contains reports whether status is in r.
func (r StatusRange) Contains(status int) bool { return status >= r.Lo && status <= r.Hi }

// String formats r as it is written: "200" or "200-399".
func (r StatusRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprintf("%03d", r.Lo)
	}
	return fmt.Sprintf("%03d-%03d", r.Lo, r.Hi)
}

// MarshalText implements encoding.TextMarshaler.
func (r StatusRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: three digits, or two
// groups of three joined by '-' (Validate checks their order and range).
func (r *StatusRange) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, aok := statusCode(strings.TrimSpace(lo))
	b, bok := statusCode(strings.TrimSpace(hi))
	if !aok || !bok {
		return fmt.Errorf("invalid status %q: write a status, e.g. 200, or a range, e.g. \"200-399\"", s)
	}
	*r = StatusRange{a, b}
	return nil
}

// statusCode parses three decimal digits.
func statusCode(s string) (int, bool) {
	if len(s) != 3 {
		return 0, false
	}
	n := 0
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
