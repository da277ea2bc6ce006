"""scaling: scaling-law experiments in JAX/Flax, from sweep grid to fitted compute-optimal law."""

from setuptools import find_packages, setup

# The stack is pinned to the versions measured in shared/notes/stack_probe.md: flax, orbax and
# seqio move fast and their APIs shift between minor versions.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "seqio==0.0.20",
    "sentencepiece==0.2.3",
    "tokenizers>=0.19",  # Hugging Face tokenizer.json files and the offline hf-bpe:N trainer (Rust, fast)
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",  # results.parquet
    "matplotlib",
    "tensorboardX",  # TensorBoard event files without importing TensorFlow in the train loop
]

EXTRAS = {
    "slurm": ["submitit"],
    "ray": ["ray[default]"],
    "tpu": ["jax[tpu]==0.10.2"],
    "gpu": ["jax[cuda12]==0.10.2"],
}
EXTRAS["zstd"] = ["zstandard"]  # .jsonl.zst / .json.zst corpus files
# Experiment trackers beside TensorBoard (`--tracker wandb|mlflow`, scaling/trackers.py), pinned to
# the versions tests/test_trackers.py passes with offline (W&B offline mode, MLflow file store).
# mlflow-skinny is MLflow's tracking client without the server and UI dependencies.
EXTRAS["wandb"] = ["wandb==0.31.0"]
EXTRAS["mlflow"] = ["mlflow-skinny==3.18.0"]
# Deviceless XLA:GPU compiles on a CPU-only host (`scaling plan --target h100-x64`, tests/test_gpu_aot.py):
# the CUDA PJRT plugin (+ its pjrt wheel, ~180 MB) compiles plain XLA programs; cuDNN attention also needs
# the cuDNN wheel (~720 MB with the cuBLAS and NVRTC wheels it pulls).  Far smaller than jax[cuda12]'s
# every-NVIDIA-library set (~3.2 GB); no CUDA runtime or driver is needed to compile.
EXTRAS["gpu-aot"] = ["jax-cuda12-plugin==0.10.2", "nvidia-cudnn-cu12==9.28.0.42"]
# The documentation site (mkdocs.yml): pinned because material and mkdocstrings change their
# config keys and griffe its docstring warnings between releases, and `mkdocs build --strict`
# (CI, tests/test_docs.py) fails on any warning.  Versions verified to build the site offline.
EXTRAS["docs"] = ["mkdocs==1.6.1", "mkdocs-material==9.8.2", "mkdocstrings[python]==1.0.8",
                  "mkdocstrings-python==2.0.11"]
# libtpu (via jax[tpu]) and the CUDA plugin (gpu-aot) let the tests AOT-compile the train step for real TPU
# topologies and NVIDIA GPUs on a CPU-only machine (tests/test_tpu_aot.py, tests/test_gpu_aot.py); with
# JAX_PLATFORMS=cpu (tests/conftest.py) each is only loaded on request.
EXTRAS["test"] = (["pytest", "nbclient", "nbformat", "ipykernel"] + EXTRAS["slurm"] + EXTRAS["ray"]
                  + EXTRAS["zstd"] + EXTRAS["tpu"] + EXTRAS["gpu-aot"] + EXTRAS["docs"] + EXTRAS["wandb"]
                  + EXTRAS["mlflow"])

setup(
    name="scaling",
    version="0.1.0",
    description="Scaling-law experiments: sweep grids of Flax decoders, a tidy results table, Chinchilla fits.",
    python_requires=">=3.11",
    packages=find_packages(include=["scaling", "scaling.*", "analysis", "analysis.*"]),
    package_data={"analysis": ["notebooks/*.ipynb", "reference_data/*.csv"], "scaling": ["gpu_targets/*.txtpb"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["scaling=scaling.cli:main"]},
)
