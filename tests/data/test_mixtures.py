"""The mixture table in gin/mixtures/*.gin is complete and valid."""
import pytest

from codemix import config
from codemix.data import mixtures

STUDY = ["text_only", "code_only", "balanced", "code_p0", "code_p25", "code_p50", "code_p75", "code_p90",
         "code_p100", "quality_web", "quality_markup", "quality_adjacent", "quality_synthetic",
         "cooldown_with_code", "cooldown_without_code"]


def test_every_study_mixture_has_a_gin_file():
    assert set(STUDY) <= set(mixtures.available())


@pytest.mark.parametrize("name", STUDY)
def test_mixture_shares_sum_to_one_over_known_tasks(name):
    import codemix.registry  # noqa: F401

    spec = mixtures.get_spec(name)
    assert abs(sum(spec.shares.values()) - 1) < 1e-9
    assert spec.description


def test_code_share_sweep_matches_its_name():
    import codemix.registry  # noqa: F401

    for p in (0, 25, 50, 75, 90, 100):
        spec = mixtures.get_spec(f"code_p{p}")
        assert spec.shares.get("code_web", 0.0) == pytest.approx(p / 100)


def test_including_the_table_binds_every_mixture():
    config.parse(["gin/mixtures/_all.gin"], finalize=False)
    for name in STUDY:
        assert mixtures.get_spec(name).source.endswith(f"{name}.gin")


def test_schedule_mixture_switches_to_text():
    import codemix.registry  # noqa: F401

    spec = mixtures.get_spec("balanced_then_text")
    assert spec.rates_at(0) == {"text": 0.5, "code_web": 0.5}
    assert spec.rates_at(1000) == {"text": 1.0}
