// Package scenarios loads and validates meshbench scenario files.
package scenarios
