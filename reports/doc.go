// Package reports turns meshbench results files into plots, an HTML report,
// run comparisons with significance tests, and exports for other tools.
package reports
