#!/usr/bin/env python3
"""Run a sweep on a Cloud TPU VM pod: create, install, run on all hosts, delete.

    python tpu_scripts/tpu.py create  --name NAME --zone ZONE --type v5litepod-16 [--queued] [--spot]
    python tpu_scripts/tpu.py install --name NAME --zone ZONE [--repo PATH_OR_GIT_URL]
    python tpu_scripts/tpu.py sweep   --name NAME --zone ZONE --experiment experiments/chinchilla_isoflop.py \\
                                      --out /mnt/scaling/chinchilla --bucket my-bucket
    python tpu_scripts/tpu.py delete  --name NAME --zone ZONE [--queued]
    python tpu_scripts/tpu.py all ...  (fit check + create + install + sweep)

Every sub-command takes ``--dry-run``: it prints the exact commands, one per line, and runs
nothing (tests check these).  Without it the commands run in order and the script stops at the
first failure.  ``sweep`` and ``all`` start with a check on this machine, before any TPU time is
spent: ``scaling plan EXP --target TYPE --require-fit`` AOT-compiles every shape of the sweep
for the pod's topology (libtpu) and stops unless every cell fits; the pod's sweep then plans
with the same ``--target`` (same cells, same auto-fit choices, same run ids).

How a pod runs a sweep: ``gcloud compute tpus tpu-vm ssh --worker=all`` starts the same
``scaling sweep`` on every host with ``SCALING_MULTIHOST=1``; each worker joins one JAX
job through ``jax.distributed.initialize()`` (TPU auto-detection) and all hosts train the
same cells in the same order as one SPMD program (the worker's lockstep mode).
The sweep directory must be shared by all hosts: ``--bucket`` mounts a GCS bucket with
gcsfuse at ``/mnt/scaling`` on every host.  Re-running ``sweep`` resumes: finished cells are
skipped and partial ones restore their latest checkpoint.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

DEFAULT_RUNTIME = "tpu-ubuntu2204-base"
REMOTE_DIR = "~/scaling"


def _common(args) -> list[str]:
    out = [f"--zone={args.zone}"]
    if args.project:
        out.append(f"--project={args.project}")
    return out


def _ssh(args, remote: str) -> list[str]:
    return (["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name] + _common(args)
            + ["--worker=all", f"--command={remote}"])


def create_cmds(args) -> list[list[str]]:
    if args.queued:
        cmd = (["gcloud", "compute", "tpus", "queued-resources", "create", args.name] + _common(args)
               + [f"--node-id={args.name}", f"--accelerator-type={args.type}", f"--runtime-version={args.runtime}"])
    else:
        cmd = (["gcloud", "compute", "tpus", "tpu-vm", "create", args.name] + _common(args)
               + [f"--accelerator-type={args.type}", f"--version={args.runtime}"])
    if args.spot:
        cmd.append("--spot")
    return [cmd]


def wait_cmds(args) -> list[list[str]]:
    """A queued resource is usable once ACTIVE: poll its state (bash loop, printed as one command)."""
    if not args.queued:
        return []
    describe = shlex.join(["gcloud", "compute", "tpus", "queued-resources", "describe", args.name] + _common(args)
                          + ["--format=value(state.state)"])
    loop = (f"until [ \"$({describe})\" = ACTIVE ]; do sleep 30; done")
    return [["bash", "-c", loop]]


def install_cmds(args) -> list[list[str]]:
    cmds = []
    repo = args.repo
    if repo.startswith(("http://", "https://", "git@")):
        get = f"rm -rf {REMOTE_DIR} && git clone --depth 1 {shlex.quote(repo)} {REMOTE_DIR}"
        cmds.append(_ssh(args, get))
    else:  # a local checkout: copy it to every host
        cmds.append(["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", repo, f"{args.name}:{REMOTE_DIR}"]
                    + _common(args) + ["--worker=all"])
    pip = f"cd {REMOTE_DIR} && python3 -m pip install -U pip && python3 -m pip install -e '.[tpu]'"
    cmds.append(_ssh(args, pip))
    if args.bucket:
        mount = ("sudo mkdir -p /mnt/scaling && sudo chmod 777 /mnt/scaling && "
                 f"(mountpoint -q /mnt/scaling || gcsfuse --implicit-dirs {shlex.quote(args.bucket)} /mnt/scaling)")
        cmds.append(_ssh(args, mount))
    return cmds


def check_cmds(args) -> list[list[str]]:
    """Here, before any TPU time is spent: AOT-compile every shape of the sweep for the pod's type
    (libtpu, on this machine) and stop unless every cell fits (auto-fit may refit some)."""
    return [[sys.executable, "-m", "scaling.cli", "plan", args.experiment, "--target", args.type, "--require-fit"]]


def sweep_cmds(args) -> list[list[str]]:
    env = "SCALING_MULTIHOST=1 SCALING_COMPILE_CACHE=" + shlex.quote(f"{args.out}/.jax_cache")
    run = (f"cd {REMOTE_DIR} && {env} python3 -m scaling.cli sweep {shlex.quote(args.experiment)} "
           f"--out {shlex.quote(args.out)} --target {shlex.quote(args.type)} --backend local --workers 1 2>&1 "
           f"| tee -a ~/sweep.log")
    return check_cmds(args) + [_ssh(args, run)]


def delete_cmds(args) -> list[list[str]]:
    sub = "queued-resources" if args.queued else "tpu-vm"
    cmd = ["gcloud", "compute", "tpus", sub, "delete", args.name] + _common(args) + ["--quiet"]
    if args.queued:
        cmd.append("--force")
    return [cmd]


STEPS = {"create": create_cmds, "wait": wait_cmds, "install": install_cmds, "sweep": sweep_cmds, "delete": delete_cmds}


def commands(args) -> list[list[str]]:
    if args.step == "all":  # the fit check first: a sweep that cannot run never creates a pod
        return check_cmds(args) + create_cmds(args) + wait_cmds(args) + install_cmds(args) + sweep_cmds(args)[1:]
    return STEPS[args.step](args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tpu_scripts/tpu.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=tuple(STEPS) + ("all",))
    ap.add_argument("--name", required=True, help="TPU VM (or queued resource) name")
    ap.add_argument("--zone", required=True, help="e.g. us-central2-b")
    ap.add_argument("--project", help="GCP project (default: gcloud's configured project)")
    ap.add_argument("--type", default="v5litepod-16", help="accelerator type, e.g. v4-32, v5litepod-16, v6e-8")
    ap.add_argument("--runtime", default=DEFAULT_RUNTIME, help="TPU VM software version")
    ap.add_argument("--queued", action="store_true", help="use a queued resource instead of a direct create")
    ap.add_argument("--spot", action="store_true", help="spot/preemptible capacity (relaunch `sweep` to resume)")
    ap.add_argument("--repo", default=".", help="local checkout to copy, or a git URL to clone")
    ap.add_argument("--bucket", help="GCS bucket mounted at /mnt/scaling on every host (shared sweep dir)")
    ap.add_argument("--experiment", default="experiments/chinchilla_isoflop.py")
    ap.add_argument("--out", default="/mnt/scaling/sweep", help="sweep directory on shared storage")
    ap.add_argument("--dry-run", action="store_true", help="print the gcloud commands, run nothing")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cmds = commands(args)
    for c in cmds:
        line = shlex.join(c)
        print(line, flush=True)
        if not args.dry_run:
            rc = subprocess.call(c)
            if rc != 0:
                print(f"error: command failed with status {rc}: {line}", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
