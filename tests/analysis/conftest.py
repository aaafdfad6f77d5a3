"""Session fixtures: one real (trained and evaluated) micro experiment, made once."""
import pytest

from tests.analysis.fixture import make_experiment


@pytest.fixture(scope="session")
def real_experiment(tmp_path_factory):
    """tests/analysis/micro_eval.gin trained and evaluated (copa, arc_easy; 4 examples)."""
    return make_experiment(tmp_path_factory.mktemp("analysis_exp"))
