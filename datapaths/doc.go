// Package datapaths defines the Datapath interface that every service-mesh
// architecture under test implements, and the registry of them.
package datapaths
