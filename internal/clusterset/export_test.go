package clusterset

// Hooks for the external test package (which imports the lab, which imports this package).

// SetBeforeStep makes Join call f before each write step; an error fails that step.
func SetBeforeStep(o *JoinOptions, f func(step string) error) { o.beforeStep = f }

// MissingVersions lists the versions a CRD object does not serve.
var MissingVersions = missingVersions
