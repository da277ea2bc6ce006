"""Checkpoint cost on this machine: save() blocking time, time until durable, restore time.

Run: python3 benchmarks/checkpoint.py [--sizes 1e6,5e6,2e7] [--devices 1]
The state mimics a trainer's: params (f32) + AdamW mu/nu + step + PRNG key, i.e. ~3x params.
Prints one row per size (median of --repeats saves). Not a test: it prints numbers.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,5e6,2e7", help="parameter counts, comma-separated")
    ap.add_argument("--devices", type=int, default=1, help="fake CPU devices; >1 shards params over them")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from scaling.checkpoint import Checkpointer, abstract_state

    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    print(f"devices={jax.device_count()} repeats={args.repeats}")
    print(f"{'params':>10} {'state MB':>9} {'save() blocks s':>16} {'durable s':>10} {'restore s':>10} {'disk MB/step':>13}")
    for n in [int(float(x)) for x in args.sizes.split(",")]:
        rows = max(jax.device_count(), (n // 1024) // jax.device_count() * jax.device_count())
        sh = NamedSharding(mesh, P("data", None))
        rep = NamedSharding(mesh, P())
        key = jax.random.key(0)
        p = jax.device_put(jax.random.normal(key, (rows, 1024), jnp.float32), sh)
        state = {"params": p, "mu": p * 0.1, "nu": p * p, "step": jax.device_put(jnp.int32(0), rep),
                 "rng": jax.device_put(key, rep)}
        mb = 3 * p.size * 4 / 2**20
        d = tempfile.mkdtemp(prefix="ckbench-")
        block, durable, restore = [], [], []
        try:
            ck = Checkpointer(d, keep_last=2)
            for i in range(1, args.repeats + 2):  # first save warms up (not counted)
                state = dict(state, step=state["step"] + 1)
                jax.block_until_ready(state)
                t0 = time.perf_counter()
                ck.save(i, state, {"i": i})
                t1 = time.perf_counter()
                ck.wait()
                t2 = time.perf_counter()
                if i > 1:
                    block.append(t1 - t0)
                    durable.append(t2 - t0)
            target = abstract_state(state, jax.tree.map(lambda x: x.sharding, state))
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ck.restore(None, target)
                restore.append(time.perf_counter() - t0)
            last = os.path.join(d, str(ck.latest_step()))
            disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(last) for f in fs) / 2**20
            ck.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        med = statistics.median
        print(f"{rows * 1024:>10,} {mb:>9.1f} {med(block):>16.3f} {med(durable):>10.3f} {med(restore):>10.3f} {disk:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
