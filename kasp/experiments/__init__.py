"""KASP layer `experiments` (see docs/architecture.md)."""
