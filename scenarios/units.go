package scenarios

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// String returns d as a Go duration string without zero trailing units,
// such as "10s", "1m30s", "10m" or "1h".
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

// UnmarshalYAML accepts a Go duration string ("10s", "1m30s", "500ms") or
// the integer 0.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDurationNode(n)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes d as a duration string, such as "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string, such as "10s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"10s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string such as \"10s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

func parseDurationNode(n *yaml.Node) (Duration, error) {
	const want = `want a duration such as "10s" or "1m30s"`
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("%s, got %s", want, describe(n))
	}
	switch n.ShortTag() {
	case "!!int":
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil && i == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%s, got %s (add a unit)", want, describe(n))
	case "!!str":
		v, err := time.ParseDuration(strings.TrimSpace(n.Value))
		if err != nil {
			return 0, fmt.Errorf("%s, got %s", want, describe(n))
		}
		return Duration(v), nil
	}
	return 0, fmt.Errorf("%s, got %s", want, describe(n))
}

// Byte size units, accepted case-insensitively.
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"kib": 1 << 10,
	"mb":  1000 * 1000,
	"mib": 1 << 20,
	"gb":  1000 * 1000 * 1000,
	"gib": 1 << 30,
}

// ParseByteSize parses a size such as "64", "64B", "4KB" (4000) or "32KiB"
// (32768). The unit is case-insensitive and may follow a space.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid byte size %q", s)
	}
	num, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid byte size %q", s)
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("invalid byte size %q: unknown unit %q (use B, KB, KiB, MB, MiB, GB or GiB)", s, strings.TrimSpace(t[i:]))
	}
	if num > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid byte size %q: too large", s)
	}
	return ByteSize(num * mult), nil
}

// String returns b with the largest binary unit that divides it exactly,
// such as "64B", "32KiB" or "1MiB".
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return strconv.FormatInt(int64(b>>30), 10) + "GiB"
	case b != 0 && b%(1<<20) == 0:
		return strconv.FormatInt(int64(b>>20), 10) + "MiB"
	case b != 0 && b%(1<<10) == 0:
		return strconv.FormatInt(int64(b>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML accepts an integer number of bytes or a string with a unit
// (see ParseByteSize).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	const want = `want a size such as 64, "32KiB" or "1MiB"`
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s, got %s", want, describe(n))
	}
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("%s, got %s", want, describe(n))
		}
		*b = ByteSize(i)
		return nil
	case "!!str":
		v, err := ParseByteSize(n.Value)
		if err != nil {
			return fmt.Errorf("%s, got %s", want, describe(n))
		}
		*b = v
		return nil
	}
	return fmt.Errorf("%s, got %s", want, describe(n))
}

// MarshalYAML writes b as an integer number of bytes.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

// MarshalJSON writes b as an integer number of bytes.
func (b ByteSize) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(b), 10), nil }

// UnmarshalJSON accepts an integer number of bytes or a string with a unit.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		v, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		*b = v
		return nil
	}
	var i int64
	if err := json.Unmarshal(data, &i); err != nil {
		return errors.New("want an integer number of bytes or a string such as \"32KiB\"")
	}
	*b = ByteSize(i)
	return nil
}
