"""The five data families of the study, one TFDS builder each (see corpus.py)."""
from codemix.data.families import code_adjacent, code_synthetic, code_web, markup, text  # noqa: F401
