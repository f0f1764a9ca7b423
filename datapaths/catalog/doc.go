// Package catalog names meshbench's datapaths: the one list scenarios, the
// doctor and the datapath registry agree on.
package catalog
