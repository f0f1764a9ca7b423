// Package fake is a testbed.Provider that builds clusters in memory and runs
// their processes as Go functions, so that the harness can be tested without
// root.
package fake
