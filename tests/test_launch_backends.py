"""SLURM (a real single-node SLURM on loopback, started here) and Ray (a local Ray) backends.

The SLURM fixture needs root and Debian's ``slurm-wlm`` + ``munge`` (``.ci/run`` installs them:
``apt-get install -y slurm-wlm munge``).  It writes a munge key and a minimal ``slurm.conf``
into a temp dir, starts munged, slurmctld and slurmd, and stops them afterwards.  On a machine
without them (a user's laptop) the SLURM test is skipped with the reason; ``.ci/run`` sets
``SCALING_REQUIRE_SLURM=1`` after installing them, and then a missing SLURM FAILS the test, so
CI can never skip it silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_launch import fake_env, launch, trainlog, write_experiment

SLURM_CONF = """\
ClusterName=scalingtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    from scaling.settings import Settings

    unavailable = pytest.fail if Settings.from_environ().require_slurm else pytest.skip
    missing = [b for b in ("sbatch", "slurmctld", "slurmd", "munged") if shutil.which(b) is None]
    if missing:
        unavailable(f"SLURM backend test needs {missing}: apt-get install -y slurm-wlm munge (as in .ci/run)")
    if os.geteuid() != 0:
        unavailable("the SLURM test starts slurmctld/slurmd and must run as root (CI does)")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    host = socket.gethostname()
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, d=d, cpus=os.cpu_count() or 2,
                                      ctld_port=_free_port(), d_port=_free_port()))
    # munged refuses to run as root and needs its files owned by user munge (created by the package)
    import pwd
    import tempfile

    mu = pwd.getpwnam("munge")
    md = Path(tempfile.mkdtemp(prefix="scaling-munge-"))
    os.chmod(md, 0o755)
    key = md / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    for x in (md, key):
        os.chown(x, mu.pw_uid, mu.pw_gid)
    sock = Path("/run/munge/munge.socket.2")  # where slurm's auth/munge looks by default
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chown(sock.parent, mu.pw_uid, mu.pw_gid)
    procs = []
    munged = subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--key-file={key}", f"--socket={sock}",
                             f"--pid-file={md}/munged.pid", f"--log-file={md}/munged.log",
                             f"--seed-file={md}/seed"], capture_output=True, text=True)
    assert munged.returncode == 0, f"munged failed: {munged.stderr}"
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=open(d / "ctld.err", "w")))
        procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=open(d / "d.err", "w")))
        deadline = time.time() + 60
        while time.time() < deadline:
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"SLURM did not come up: {r.stdout} {r.stderr}\n{(d / 'slurmctld.log').read_text()[-2000:]}")
        yield d
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        pid = md / "munged.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(md, ignore_errors=True)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


def test_slurm_backend_job_array(tmp_path, slurm_cluster):
    exp = write_experiment(tmp_path, sizes=(1, 2))  # 4 cells
    out = tmp_path / "out"
    p = launch(exp, out, workers=2, backend="slurm", env=fake_env(FAKE_TRAIN_SLEEP="0.2"))
    txt, _ = p.communicate(timeout=180)
    assert p.returncode == 0, txt
    starts, fins = trainlog(out)
    assert len(fins) == 4 and all(v == 1 for v in fins.values()) and all(v == 1 for v in starts.values())
    logs = list((out / "slurm").rglob("*_log.out"))
    assert logs, "submitit wrote no SLURM job logs: the cells did not run through sbatch"
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["run_id"].is_unique


def test_ray_backend_local_cluster(tmp_path):
    exp = write_experiment(tmp_path, sizes=(1, 2))
    out = tmp_path / "out"
    p = launch(exp, out, workers=2, backend="ray", env=fake_env(FAKE_TRAIN_SLEEP="0.1"))
    txt, _ = p.communicate(timeout=180)
    assert p.returncode == 0, txt
    starts, fins = trainlog(out)
    assert len(fins) == 4 and all(v == 1 for v in fins.values())
    import json

    from scaling.rundir import sweep_runs

    pids = {a["pid"] for rd in sweep_runs(out) for a in rd.attempts()}
    assert os.getpid() not in pids and p.pid not in pids, "cells must run inside Ray worker processes"


def test_tpu_scripts_dry_run():
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(repo / "tpu_scripts" / "tpu.py"), "all", "--name", "sc", "--zone",
                        "us-central2-b", "--type", "v4-32", "--bucket", "bkt", "--experiment",
                        "experiments/chinchilla_isoflop.py", "--out", "/mnt/scaling/c", "--dry-run"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    check, *lines = r.stdout.strip().splitlines()
    # before any TPU time: every shape compiled for the pod's type here, and the sweep refused unless it fits
    assert check.endswith("-m scaling.cli plan experiments/chinchilla_isoflop.py --target v4-32 --require-fit")
    assert lines[0] == ("gcloud compute tpus tpu-vm create sc --zone=us-central2-b --accelerator-type=v4-32 "
                        "--version=tpu-ubuntu2204-base")
    assert lines[1].startswith("gcloud compute tpus tpu-vm scp --recurse . 'sc:~/scaling'")
    assert all("--worker=all" in x for x in lines[1:])
    assert "pip install -e" in lines[2] and "gcsfuse" in lines[3]
    assert "SCALING_MULTIHOST=1" in lines[4] and "scaling.cli sweep experiments/chinchilla_isoflop.py" in lines[4]
    assert "--out /mnt/scaling/c" in lines[4] and "--target v4-32" in lines[4]
    q = subprocess.run([sys.executable, str(repo / "tpu_scripts" / "tpu.py"), "create", "--name", "sc", "--zone", "z",
                        "--queued", "--spot", "--dry-run"], capture_output=True, text=True, timeout=30)
    assert q.stdout.startswith("gcloud compute tpus queued-resources create sc --zone=z --node-id=sc")
    assert "--spot" in q.stdout
    w = subprocess.run([sys.executable, str(repo / "tpu_scripts" / "tpu.py"), "all", "--name", "sc", "--zone", "z",
                        "--queued", "--dry-run"], capture_output=True, text=True, timeout=30)
    wl = w.stdout.splitlines()[1:]  # after the fit check
    assert "queued-resources describe sc --zone=z" in wl[1] and "ACTIVE" in wl[1]
    assert wl[2].startswith("gcloud compute tpus tpu-vm scp")
