"""Development-only helpers: a local Teleport-like OIDC issuer, the demo and the local invoke. Not deployed."""
