"""User-fixable errors live in codemix/errors.py, and the old import paths still work."""
from __future__ import annotations

import ast
import builtins
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from codemix import errors

PACKAGE_DIR = Path(errors.__file__).resolve().parent
# Where each error used to be defined; code (and users' scripts) still import it from there.
OLD_HOMES = {
    "ConfigError": "codemix.config",
    "DataError": "codemix.data.readers",
    "DataMissingError": "codemix.eval.sources",
    "CheckpointFormatError": "codemix.model.hf_io",
    "GGUFImportError": "codemix.model.gguf_import",
    "BPEVocabularyError": "codemix.model.bpe_spec",
    "CorruptCheckpoint": "codemix.train.checkpoint_integrity",
    "NonFiniteLoss": "codemix.train.guards",
    "SandboxUnavailable": "codemix.eval.sandbox",
    "JudgeError": "codemix.eval.judge.client",
    "LawError": "codemix.analysis.mixture_law",
    # Born in codemix.errors; the module that raises each one re-exports it.
    "RunConfigChanged": "codemix.train.run_config",
    "RunLocked": "codemix.train.run_lock",
    "WorkdirError": "codemix.train.workdir",
    "ExperimentError": "codemix.experiments.jobs",
    "StorageError": "codemix.storage",
}
# Exception classes that are not errors a user causes: control flow and private helpers.
# CandidateFailed is raised inside the sandboxed checker (codemix/eval/remote.py runs there standalone).
NOT_USER_ERRORS = {"Preempted", "_Truncated", "CandidateFailed"}
BUILTIN_EXCEPTIONS = {name for name, obj in vars(builtins).items()
                      if isinstance(obj, type) and issubclass(obj, BaseException)}


def _exception_classes_outside_errors() -> list[str]:
    """`path:Class` for each class under codemix/ (but errors.py) whose base is an exception."""
    exception_names = BUILTIN_EXCEPTIONS | set(errors.__all__)
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE_DIR:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef) or node.name in NOT_USER_ERRORS:
                continue
            bases = {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                     if isinstance(b, ast.Name | ast.Attribute)}
            if bases & exception_names or any(b.endswith(("Error", "Exception")) for b in bases):
                found.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{node.name}")
    return found


def test_every_user_error_class_is_defined_in_codemix_errors():
    assert _exception_classes_outside_errors() == []
    for name in errors.__all__:
        assert getattr(errors, name).__module__ == "codemix.errors", name
    assert sorted(OLD_HOMES) == sorted(errors.__all__)


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_old_import_path_resolves_to_the_same_class(name):
    module = importlib.import_module(OLD_HOMES[name])
    assert getattr(module, name) is getattr(errors, name)


def test_bases_are_kept_so_existing_except_clauses_still_catch():
    # codemix.main prints ValueError/FileNotFoundError without a traceback; callers catch these bases.
    assert issubclass(errors.DataError, ValueError)
    assert issubclass(errors.DataMissingError, FileNotFoundError)
    assert issubclass(errors.GGUFImportError, errors.CheckpointFormatError)
    assert issubclass(errors.CorruptCheckpoint, ValueError)
    assert issubclass(errors.SandboxUnavailable, RuntimeError)
    assert not issubclass(errors.ConfigError, ValueError)
    e = errors.NonFiniteLoss(7, "loss is nan at step 7")
    assert (e.step, str(e)) == (7, "loss is nan at step 7")


def test_importing_errors_loads_nothing_else():
    # Standard-library modules (e.g. __future__, which a fresh interpreter may
    # not have loaded yet) are allowed; anything else is a dependency.
    code = ("import sys; before = set(sys.modules); import codemix.errors; "
            "print(sorted(m for m in set(sys.modules) - before "
            "if m.split('.')[0] not in sys.stdlib_module_names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert ast.literal_eval(out.stdout.strip()) == ["codemix", "codemix.errors"]
