// Package staticbin tells a statically linked program from one that needs
// a C library, for images that carry none.
package staticbin
