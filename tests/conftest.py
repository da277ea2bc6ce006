"""Test-wide setup: 8 fake CPU devices, quiet TensorFlow, isolated caches.

The environment must be set before anything imports jax, which is why it lives at the top of
conftest (pytest imports it before any test module).  Sharding code paths therefore run on
8 virtual CPU devices, exactly as they would on an 8-chip host.
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Caches shared by the whole test session, never the user's ~/.cache.
_session_cache = Path(tempfile.mkdtemp(prefix="scaling-test-cache-"))
os.environ.setdefault("SCALING_CACHE_DIR", str(_session_cache))
os.environ.setdefault("SCALING_DATA_DIR", str(_session_cache / "data"))

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def reference_data_dir() -> Path:
    """Published scaling data shipped inside the package (analysis/reference_data, with provenance)."""
    from analysis.published import REFERENCE_DIR

    return REFERENCE_DIR
