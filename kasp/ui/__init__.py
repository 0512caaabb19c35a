"""KASP layer `ui` (see docs/architecture.md)."""
