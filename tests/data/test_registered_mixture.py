"""The SeqIO Mixture registered for a codemix mixture tells the truth: its rates
are the token shares training mixes, and sampling it through SeqIO (which would
mix whole documents, not equal-length packed rows) is refused with the way to
read what training reads."""
import re

import pytest
import seqio

from codemix.data import pipeline, tasks
from codemix.data.readers import DataError


def _rates(mixture: seqio.Mixture) -> dict[str, float]:
    return {t.name: mixture.get_rate(t) for t in mixture.tasks}


@pytest.mark.parametrize("name", ["code_p25", "quality_synthetic"])
def test_registered_rates_are_the_shares_training_mixes(name):
    names, phases = pipeline.resolve_schedule(name)  # what make_train_iterator interleaves
    registered = seqio.get_mixture_or_task(name)
    assert isinstance(registered, tasks.TokenShareMixture)
    assert _rates(registered) == pytest.approx(dict(zip(names, phases[0][1])))
    assert sum(_rates(registered).values()) == pytest.approx(1.0)


def test_code_p25_is_registered_at_a_quarter_code():
    tasks.register_mixture("code_p25")
    assert _rates(seqio.get_mixture_or_task("code_p25")) == {"text": 0.75, "code_web": 0.25}


def test_sampling_the_registered_mixture_is_refused_naming_the_training_stream():
    tasks.register_mixture("code_p25")
    with pytest.raises(DataError, match=r"make_train_iterator\(mixture='code_p25'\)"):
        seqio.get_mixture_or_task("code_p25").get_dataset({"targets": 64}, split="train")


def test_a_scheduled_mixture_names_the_steps_its_shares_change():
    spec = tasks.register_mixture("balanced_then_text")
    assert len(spec.phases) > 1
    registered = seqio.get_mixture_or_task("balanced_then_text")
    assert _rates(registered) == pytest.approx({t: spec.shares.get(t, 0.0) for t in spec.tasks})
    with pytest.raises(DataError, match=re.escape(f"change at steps {[s for s, _ in spec.phases[1:]]}")):
        registered.get_dataset({"targets": 64}, split="train")
