"""The shipped GLUE files, installed as ``kasp.glue``; provenance in data/README.md; see kasp/resources.py."""
