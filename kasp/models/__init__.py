"""KASP layer `models` (see docs/architecture.md)."""
