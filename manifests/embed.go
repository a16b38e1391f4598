package manifests

import "embed"

// Examples holds the example manifests shipped with minicluster.
//
//go:embed *.yaml
var Examples embed.FS
