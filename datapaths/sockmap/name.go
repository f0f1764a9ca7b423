package sockmap

import "github.com/meshbench/meshbench/datapaths/catalog"

// Name is the datapath's name in scenarios and results.
const Name = catalog.Sockmap
