"""KASP layer `data` (see docs/architecture.md)."""
