package all

import (
	"testing"

	"github.com/meshbench/meshbench/datapaths/catalog"
)

// The registry builds exactly the catalog's datapaths, each under its own
// name.
func TestRegistryMatchesCatalog(t *testing.T) {
	for _, name := range catalog.Names() {
		dp, err := New(name, nil, Options{})
		if err != nil {
			t.Errorf("New(%q): %v", name, err)
			continue
		}
		if dp.Name() != name {
			t.Errorf("New(%q) built datapath %q", name, dp.Name())
		}
	}
	if _, err := New("bogus", nil, Options{}); err == nil {
		t.Error("New(bogus) built a datapath")
	}
}
