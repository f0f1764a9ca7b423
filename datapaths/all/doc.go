// Package all registers every datapath implementation by name.
package all
