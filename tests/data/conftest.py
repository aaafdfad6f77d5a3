"""Shared fixtures: the five local corpora and a small vocabulary, prepared once
per session in a temporary directory (small caps keep this to ~30 s)."""
import pytest

import gin

SMALL = {
    "CorpusOptions.local_max_bytes": 300_000,
    "VocabOptions.size": 1024,
    "VocabOptions.sample_bytes": 400_000,
}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("codemix_data")


@pytest.fixture
def data_env(data_root):
    """Bind gin so corpora and the default vocabulary live in the session dir."""
    import codemix.registry  # noqa: F401

    bindings = [
        f"CorpusOptions.data_dir = '{data_root / 'tfds'}'",
        f"VocabOptions.cache_dir = '{data_root / 'vocab'}'",
    ] + [f"{k} = {v!r}" for k, v in SMALL.items()]
    gin.parse_config(bindings)
    return data_root
