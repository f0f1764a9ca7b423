// Package maglev implements Maglev consistent hashing (Eisenbud et al.,
// NSDI 2016): a lookup table that spreads keys evenly over backends and
// moves few keys when the backend set changes.
package maglev
