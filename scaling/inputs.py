"""What one run reads: its validated mesh, its data sources and the numbers it is measured by.

:class:`RunInputs` is opened once per run, before anything is compiled: it resolves the
mesh, checks every batch and parameter dimension against it, checks the task's vocabulary
against the model and the token budget against the split, opens the train and validation
sources, and takes the accounting numbers (FLOPs per token, device peak) the metrics use.
Any failure is a one-line :class:`~scaling.config.ConfigError`.

Batches are pure functions of (task, seed, step, process): :meth:`RunInputs.host_train_batch`
is this process's rows of train batch ``step_index``; :meth:`RunInputs.eval_batches` is the
fixed validation set (seed ``EVAL_SEED``), the same for every cell of a task and seq_len.
"""

from __future__ import annotations

import math

from scaling.config import Cell, ConfigError
from scaling.programs import EVAL_KEYS, TRAIN_KEYS

EVAL_SEED = 1_000_003  # validation batches are the same for every cell of a task


def mfu_device_count() -> int:
    """Devices whose peaks add up: all devices, except on CPU where the (virtual) devices of one
    process share the same cores and the measured peak already covers the whole host."""
    import jax

    from scaling.settings import is_cpu

    return jax.process_count() if is_cpu() else jax.device_count()


def global_batch(np_batch: dict, keys, sharding) -> dict:
    """This process's numpy rows of a batch, as global arrays laid out by ``sharding``."""
    import jax

    return {k: jax.make_array_from_process_local_data(sharding, np_batch[k]) for k in keys}


class RunInputs:
    """The validated mesh, data and accounting of one cell (see the module docstring).

    ``like`` is the inputs of another cell of the same shape and data (a stacked trainer's
    first member): its mesh, sources and device peak are reused instead of opened again.
    """

    def __init__(self, cell: Cell, settings, like: "RunInputs | None" = None):
        import jax

        from scaling import accounting, sharding
        from scaling import data as sdata

        self.cell = cell
        self.settings = settings  # the entry point's; the recorder reads its trackers
        cfg = cell.model
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.is_lead = self.process_index == 0  # the process that writes the run directory

        # ---- validation (no compile, no data read yet) ---------------------------------
        self.mesh = like.mesh if like else sharding.make_mesh(cell.mesh)
        sharding.check_divisibility(self.mesh, batch_size=cell.batch_size, grad_accum=cell.grad_accum,
                                    model_cfg=cfg, process_count=self.process_count,
                                    eval_batch_size=cell.eval_batch_size)
        data = settings.resolve_data(cell.data)  # the caches of these settings (data_dir is not in the run id)
        v = sdata.vocab_size(data)
        if v > cfg.vocab_size:
            raise ConfigError(f"model.vocab_size={cfg.vocab_size}: task {cell.data.task!r} with vocab "
                              f"{cell.data.vocab!r} has {v} tokens; set vocab_size >= {v}")

        # ---- data ----------------------------------------------------------------------
        self.train_src = like.train_src if like else sdata.open_source(data, "train", cfg.seq_len)
        self.val_src = like.val_src if like else sdata.open_source(data, "validation", cfg.seq_len)
        self.info = self.train_src.info
        sdata.check_budget(self.info, cell.tokens_trained, cell.data.repeat)
        # downstream tasks: read, validated against seq_len with this run's tokenizer, and packed
        # into eval batches here, before any compile (scaling.evaltasks)
        self.tasks = like.tasks if like else self._open_tasks(sdata.default_data_dir(data))

        # ---- accounting ----------------------------------------------------------------
        self.flops_per_token = accounting.flops_per_token_all(cfg)
        if like:
            self.peak, self.peak_source = like.peak, like.peak_source
        else:
            self.peak, self.peak_source = accounting.peak_flops(jax.devices()[0], settings=settings)
        self.n_devices = jax.device_count()
        self.mfu_devices = mfu_device_count()

    def host_train_batch(self, step_index: int) -> dict:
        """This process's rows of train batch ``step_index`` (numpy; a pure function of seed and step)."""
        return self.train_src.batch(step_index, self.cell.batch_size, seed=self.cell.seed,
                                    process_index=self.process_index, process_count=self.process_count)

    def train_batch(self, step_index: int, sharding) -> dict:
        return global_batch(self.host_train_batch(step_index), TRAIN_KEYS, sharding)

    def eval_batches(self, sharding) -> list[dict]:
        """The fixed validation set: ``eval_batches`` batches of ``eval_batch_size`` rows (global arrays)."""
        eB = self.cell.eval_batch_size
        return [global_batch(self.val_src.batch(i, eB, seed=EVAL_SEED, process_index=self.process_index,
                                                process_count=self.process_count), EVAL_KEYS, sharding)
                for i in range(self.cell.eval_batches)]

    def _open_tasks(self, data_dir: str) -> tuple:
        from scaling import evaltasks

        if not self.cell.eval_tasks:
            return ()
        loaded = evaltasks.load_tasks(self.cell.eval_tasks, data_dir=data_dir)
        return tuple(evaltasks.PackedTask(t, self.val_src.vocab, self.cell.model.seq_len, self.cell.eval_batch_size)
                     for t in loaded)

    def task_shas(self) -> dict:
        """``{task name: sha256 of its content}`` (recorded in checkpoints and the summary)."""
        return {p.task.name: p.task.sha for p in self.tasks}

    def task_batches(self, sharding) -> list[list[dict]]:
        """Per task, its packed eval batches (global arrays, rows split over processes like the eval set)."""
        return [[global_batch(p.host_batch(b, self.process_index, self.process_count), EVAL_KEYS, sharding)
                 for b in range(len(p.batches))] for p in self.tasks]

    def task_numbers(self, token_nll) -> dict:
        """``{"task/<name>/acc": ..., ".../acc_norm", ".../bpb"}`` from each task's per-batch ``token_nll``."""
        from scaling.evaltasks import column

        out = {}
        for p, toks in zip(self.tasks, token_nll):
            for k, v in p.metrics(toks).items():
                out[column(p.task.name, k)] = v
        return out

    def eval_numbers(self, outs) -> tuple[float, float | None]:
        """(mean eval loss in nats, bits per byte or None) from the eval program's per-batch sums."""
        nll = w = nbytes = 0.0
        for o in outs:
            nll += float(o["nll"])
            w += float(o["weight"])
            nbytes += float(o["bytes"])
        loss = nll / max(w, 1.0)
        bpb = nll / math.log(2) / nbytes if (self.info.has_bytes and nbytes > 0) else None
        return loss, bpb

    def epoch(self, tokens: int) -> float | None:
        """Passes over the train split after ``tokens`` training tokens."""
        return tokens / self.info.num_tokens if self.info.num_tokens else None

    def unique_tokens(self, tokens: int) -> int:
        """Distinct training tokens seen after ``tokens`` (the split's size caps it)."""
        return min(tokens, self.info.num_tokens) if self.info.num_tokens else tokens

    def mfus(self, tokens_per_s: float | None) -> dict:
        """``{"mfu_6n", "mfu_palm"}`` (:func:`scaling.accounting.mfus`; None without a throughput)."""
        from scaling import accounting

        if not tokens_per_s:
            return {"mfu_6n": None, "mfu_palm": None}
        return accounting.mfus(self.cell.model, tokens_per_s, self.mfu_devices, self.peak)

    def mfu(self, tokens_per_s: float | None) -> float | None:
        from scaling import accounting

        if not tokens_per_s:
            return None
        return accounting.mfu(tokens_per_s, self.flops_per_token[self.cell.flops_convention], self.mfu_devices,
                              self.peak)
