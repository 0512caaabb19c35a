"""KASP: knowledge-aware sparse pruning of BERT-family models.

Implements the SparseBERT method of Xu, Yen, Zhao and Xiao, "Rethinking Network Pruning - under the
Pre-train and Fine-tune Paradigm", NAACL-HLT 2021 (doi 10.18653/v1/2021.naacl-main.188): a
pre-trained student is pruned with unstructured per-matrix magnitude masks on a cubic schedule while
a fine-tuned teacher is distilled into it (pre-softmax attention scores, hidden states, logits).

The package is the engine only: plain functions and a small training loop, no Streamlit imports.
"""

__version__ = "0.1.0"

from kasp.ground.errors import KaspError

__all__ = ["KaspError", "__version__"]
