// Package agentpb is the node agent's gRPC API, generated from agent.proto
// (`make generate`).
package agentpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative agent.proto
