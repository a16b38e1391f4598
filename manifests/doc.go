// Package manifests reads Kubernetes manifests (multi-document YAML or JSON) into JSON
// documents that remember where each field came from, so a decode or validation error
// can name the line, and holds the example manifests (embedded for the daemon and tests).
// It knows nothing of the API's types or of the server.
package manifests
