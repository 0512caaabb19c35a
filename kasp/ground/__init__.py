"""KASP layer `ground` (see docs/architecture.md)."""
