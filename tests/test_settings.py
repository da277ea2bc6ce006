"""Settings: every SCALING_* variable read in one place, bad values named, handed to children intact."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.config import ConfigError
from scaling.settings import Settings, env_name, is_cpu

REPO = Path(__file__).resolve().parents[1]


def test_from_environ_parses_types_and_defaults(tmp_path):
    s = Settings.from_environ({"SCALING_CACHE_DIR": str(tmp_path), "SCALING_PEAK_FLOPS": "4.3e11",
                               "SCALING_STACK_MAX": "3", "SCALING_MULTIHOST": "1", "SCALING_LOCK_STALE_S": "30"})
    assert s.cache_dir == str(tmp_path) and s.data_dir == str(tmp_path / "data")  # data follows the cache dir
    assert s.peak_flops == 4.3e11 and s.stack_max == 3 and s.multihost is True and s.lock_stale_s == 30.0
    d = Settings.from_environ({})
    assert d.stack_max is None and d.peak_flops is None and d.compile_cache is None and not d.multihost
    assert d.data_dir.endswith(".cache/scaling/data")


@pytest.mark.parametrize("env, needle", [
    ({"SCALING_STACK_MAX": "many"}, "SCALING_STACK_MAX='many': must be an integer"),
    ({"SCALING_STACK_MAX": "0"}, "SCALING_STACK_MAX=0"),
    ({"SCALING_PEAK_FLOPS": "-1"}, "SCALING_PEAK_FLOPS=-1.0: must be a positive number"),
    ({"SCALING_MULTIHOST": "maybe"}, "SCALING_MULTIHOST='maybe': must be 0 or 1"),
    ({"SCALING_LOCK_STALE_S": "5"}, "SCALING_LOCK_STALE_S=5.0: must exceed SCALING_LOCK_HEARTBEAT_S"),
    ({"SCALING_NUM_PROCESSES": "2", "SCALING_PROCESS_ID": "2"}, "SCALING_PROCESS_ID=2"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as e:
        Settings.from_environ(env)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_environ_round_trips_through_a_child_process(tmp_path):
    s = Settings.from_environ({}).replace(compile_cache=str(tmp_path / "jc"), stack_max=2, lock_stale_s=60.0,
                                          ray_address="auto")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **s.environ()}
    code = ("import dataclasses, json; from scaling.settings import Settings; "
            "print(json.dumps(dataclasses.asdict(Settings.from_environ())))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    import json

    assert json.loads(out) == dataclasses.asdict(s)


def test_env_name_and_is_cpu():
    assert env_name("peak_flops") == "SCALING_PEAK_FLOPS"
    with pytest.raises(KeyError):
        env_name("nope")
    assert is_cpu()  # tests run on CPU (conftest sets JAX_PLATFORMS=cpu)


def test_no_module_reads_scaling_variables_but_settings():
    """The settings seam: code outside scaling/settings.py never reads a SCALING_* variable itself."""
    import re

    offenders = []
    for p in sorted((REPO / "scaling").rglob("*.py")) + sorted((REPO / "analysis").rglob("*.py")):
        if p.name == "settings.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']SCALING_", line) or re.search(r"getenv\([\"']SCALING_", line):
                offenders.append(f"{p.relative_to(REPO)}:{i}")
    assert not offenders, offenders
