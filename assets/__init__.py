"""Shipped assets (precomputed runs, diagram, vendored JS), installed as ``kasp.assets``; see kasp/resources.py."""
