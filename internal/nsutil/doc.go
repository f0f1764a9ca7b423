// Package nsutil runs code and opens sockets inside network namespaces.
package nsutil
