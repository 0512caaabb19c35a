"""KASP layer `spec` (see docs/architecture.md)."""
