// Package golden compares test output with golden files and rewrites them when tests run with -update.
package golden
