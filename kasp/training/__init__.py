"""KASP layer `training` (see docs/architecture.md)."""
