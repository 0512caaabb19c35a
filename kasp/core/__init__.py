"""KASP layer `core` (see docs/architecture.md)."""
