// Package results defines the meshbench results schema and reads and writes
// results files; reports read nothing else.
package results
