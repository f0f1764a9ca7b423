// Package atomicfile writes files so that a reader sees the old content or
// the new, never a part.
package atomicfile
