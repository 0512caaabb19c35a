"""KASP layer `analysis` (see docs/architecture.md)."""
