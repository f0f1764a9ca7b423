// Package uids names the user and group ids meshbench's proxies run as:
// the one place the number is written.
package uids
