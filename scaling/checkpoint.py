"""Checkpoints for one training run: an Orbax ``CheckpointManager`` with guard rails.

A run's checkpoints must survive the three ways a long job really dies: it is killed
mid-write (SIGKILL, node loss), it is told to stop (SIGTERM from a scheduler), or the
disk quietly loses part of a file. :class:`Checkpointer` wraps Orbax 0.12.8 so that

* **saves are async** -- ``save()`` blocks only while device arrays are copied to host,
  the write to disk runs in a background thread while training continues;
* **saves are atomic** -- Orbax writes ``<step>.orbax-checkpoint-tmp*`` and renames it to
  ``<step>`` only after every file is written, so a half-written step is never listed;
* **async errors are fatal** -- a background write that failed raises
  :class:`CheckpointSaveError` at the next ``save()`` / ``wait()`` / ``close()``; we also
  check on disk that the step really committed, so an error Orbax only *logs* still surfaces;
* **restore falls back** -- ``restore()`` tries the requested step, and if it is corrupt
  (a missing or truncated array file) it warns (:class:`CheckpointFallbackWarning`),
  moves the bad step aside to ``corrupt/`` and restores the next older step;
* **restore reshards** -- the caller passes an abstract state whose leaves are
  ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``; arrays come back with *those*
  shardings, on any mesh (or one CPU device), independent of the mesh that saved them;
* **retention** keeps the newest ``keep_last`` steps plus, permanently, every step that is
  a multiple of ``keep_every`` and every step in ``keep_steps`` (Orbax ``LatestN`` OR
  ``EveryNSteps`` OR ``CustomSteps`` preservation policies).

Directory layout (``directory`` is usually ``<run_dir>/checkpoints``)::

    <directory>/
      <step>/                          one committed checkpoint (plain integer name)
        _CHECKPOINT_METADATA           Orbax step metadata (written at commit)
        commit_success.txt             Orbax commit marker
        state/                         the state pytree (OCDBT + zarr, sharding-agnostic)
        meta/metadata                  the JSON meta dict, exactly as given to save()
        scaling_manifest.json          ours: {relative path: size} of every file under
                                       state/ and meta/, written after the step committed;
                                       lets latest_step() spot a deleted/truncated file
                                       without reading arrays
      <step>.orbax-checkpoint-tmp*/    a save in flight or interrupted: never restored,
                                       removed when the next Checkpointer opens the directory
      corrupt/<step>.<unix_time>/      steps that failed to restore, moved aside (kept for
                                       forensics; nothing reads them)

Typical trainer use::

    ckpt = Checkpointer(run_dir / "checkpoints", keep_last=cell.keep_last,
                        keep_every=cell.keep_every)
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(None, abstract_state)   # None: newest good step
        start = ckpt.restored_step
    with install_sigterm_handler(lambda: ckpt.save(step, state, meta)) as guard:
        for step in ...:
            state = train_step(state, batch)
            if step % cell.checkpoint_every == 0:
                ckpt.save(step, state, meta)
            if guard.check():          # SIGTERM arrived: callback saved; stop now
                break
    ckpt.close()                       # durable on return
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import signal
import threading
import time
import warnings
from typing import Any, Callable, Mapping

from scaling.config import ConfigError

log = logging.getLogger(__name__)

MANIFEST_NAME = "scaling_manifest.json"
CORRUPT_DIR = "corrupt"
_ITEMS = ("state", "meta")
# Files every committed step must have (relative to the step directory).
_REQUIRED_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA", "meta/metadata")


class CheckpointError(RuntimeError):
    """Base class of checkpoint failures."""


class CheckpointSaveError(CheckpointError):
    """A save failed (possibly in the background); ``__cause__`` holds the original error."""


class CheckpointRestoreError(CheckpointError):
    """No checkpoint at or below the requested step could be restored."""


class CheckpointFallbackWarning(UserWarning):
    """A newer checkpoint was corrupt and an older one was restored instead."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _json_scalar(o: Any) -> Any:
    """json.dumps fallback: numpy / jax scalars (e.g. ``np.int64`` token counts) become Python numbers."""
    if getattr(o, "shape", None) == () and hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def abstract_state(tree: Any, shardings: Any) -> Any:
    """Abstract restore target: ``ShapeDtypeStruct`` per leaf carrying a sharding.

    ``tree`` holds arrays or ``ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``);
    ``shardings`` is either one ``jax.sharding.Sharding`` used for every leaf (e.g.
    ``SingleDeviceSharding(jax.devices("cpu")[0])`` to restore on one CPU) or a pytree of
    shardings with the same structure as ``tree``.
    """
    import jax

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def check_step_dir(root: str) -> str | None:
    """None if the step directory ``root`` looks complete, else why not.

    Needs the commit's metadata files to exist and parse; if our manifest exists, every file
    it lists must exist with the recorded size. Reads no array data.
    """
    if not os.path.isdir(root):
        return "missing directory"
    for rel in _REQUIRED_FILES:
        p = os.path.join(root, rel)
        if not os.path.isfile(p):
            return f"missing {rel}"
        try:
            with open(p) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            return f"unreadable {rel}: {e}"
    mp = os.path.join(root, MANIFEST_NAME)
    if os.path.isfile(mp):
        try:
            with open(mp) as f:
                files = json.load(f)["files"]
        except (OSError, ValueError, KeyError) as e:
            return f"unreadable {MANIFEST_NAME}: {e}"
        for rel, size in files.items():
            p = os.path.join(root, rel)
            if not os.path.isfile(p):
                return f"missing {rel}"
            if os.path.getsize(p) != size:
                return f"{rel} has {os.path.getsize(p)} bytes, manifest says {size}"
    return None


def has_step(directory, step: int) -> bool:
    """Whether ``directory`` holds a complete, committed checkpoint of ``step``.

    Safe while another process writes to ``directory``: it only reads.  Orbax renames a step
    to its final name at commit, so an in-flight save is never mistaken for a committed one.
    """
    return check_step_dir(os.path.join(os.fspath(directory), str(int(step)))) is None


def read_step_meta(directory, step: int) -> dict:
    """The JSON meta of ``step`` in another run's checkpoint directory, read-only (see :func:`restore_step`)."""
    with open(os.path.join(os.fspath(directory), str(int(step)), "meta", "metadata")) as f:
        return json.load(f)


def step_metas(directory) -> list[tuple[int, dict]]:
    """``(step, meta)`` of every committed step in ``directory`` whose meta reads, ascending; no
    array is read and nothing is written (used to check which cell a run directory's checkpoints
    belong to before anything is compiled)."""
    root = os.fspath(directory)
    if not os.path.isdir(root):
        return []
    out = []
    for name in sorted((n for n in os.listdir(root) if n.isdigit()), key=int):
        try:
            meta = read_step_meta(root, int(name))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            out.append((int(name), meta))
    return out


def restore_step(directory, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """``(state, meta)`` of exactly ``step`` from another run's checkpoint directory, read-only.

    For a WSD fork reading its trunk: unlike :class:`Checkpointer`, this never cleans the
    directory (its owner may be saving into it right now), never falls back to another step
    and never moves a bad step aside.  Raises :class:`CheckpointRestoreError` naming the step.
    """
    import jax
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    reason = check_step_dir(os.path.join(directory, str(int(step))))
    if reason is not None:
        raise CheckpointRestoreError(f"checkpoint step {step} in {directory}: {reason}")
    mngr = ocp.CheckpointManager(directory, item_names=_ITEMS,
                                 options=ocp.CheckpointManagerOptions(read_only=True, create=False))
    try:
        r = mngr.restore(int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                            meta=ocp.args.JsonRestore()))
        jax.block_until_ready(r.state)
        return r.state, dict(r.meta)
    except Exception as e:  # noqa: BLE001 - name the step and directory, keep the cause
        raise CheckpointRestoreError(f"checkpoint step {step} in {directory} could not be restored: "
                                     f"{type(e).__name__}: {e}") from e
    finally:
        mngr.close()


class Checkpointer:
    """Async, atomic, self-checking checkpoints of ``(state pytree, JSON meta)`` per step.

    Args:
      directory: where step directories live; created if missing.
      keep_last: keep the newest ``keep_last`` steps (>= 1).
      keep_every: if > 0, additionally keep forever every step with
        ``step % keep_every == 0``; 0 disables.
      keep_steps: additionally keep forever these steps (a WSD trunk's fork points).
      async_save: write in a background thread (default). With ``False`` every
        ``save()`` returns only after the step is durable.

    Not thread-safe; call from the training thread. All processes of a multi-host job
    must call ``save``/``restore``/``wait`` collectively (Orbax synchronises them).
    """

    def __init__(self, directory, *, keep_last: int = 2, keep_every: int = 0, keep_steps=(), async_save: bool = True):
        _require(isinstance(keep_last, int) and keep_last >= 1,
                 f"keep_last={keep_last!r}: must be an integer >= 1 (number of newest checkpoints kept)")
        _require(isinstance(keep_every, int) and keep_every >= 0,
                 f"keep_every={keep_every!r}: must be an integer >= 0 (0 disables permanent checkpoints)")
        import orbax.checkpoint as ocp
        from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

        self.directory = os.path.abspath(os.fspath(directory))
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.async_save = async_save
        self.restored_step: int | None = None  # which step the last restore() returned
        self._pending: int | None = None  # step whose async write is not yet verified
        self._closed = False
        os.makedirs(self.directory, exist_ok=True)
        policies = [pp.LatestN(n=keep_last)]
        if keep_every:
            policies.append(pp.EveryNSteps(interval_steps=keep_every))
        if keep_steps:
            policies.append(pp.CustomSteps(steps=[int(x) for x in keep_steps]))
        self._ocp = ocp
        self._mngr = ocp.CheckpointManager(
            self.directory,
            item_names=_ITEMS,
            options=ocp.CheckpointManagerOptions(
                enable_async_checkpointing=async_save,
                preservation_policy=pp.AnyPreservationPolicy(policies),
                cleanup_tmp_directories=True,  # debris of interrupted saves
                create=True,
                # Create the tmp step directory in save() itself. With Orbax's default
                # (async creation) a save that fails synchronously leaves a writer thread
                # waiting 20 min for a "directory created" signal, hanging interpreter exit.
                async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
            ),
        )

    # ------------------------------------------------------------------ helpers
    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _is_primary(self) -> bool:
        import jax

        return jax.process_index() == 0

    def _sync(self, name: str) -> None:
        import jax

        if jax.process_count() > 1:
            self._ocp.multihost.sync_global_processes(f"scaling_checkpoint:{name}")

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"Checkpointer({self.directory!r}) is closed")

    def _write_manifest(self, step: int) -> None:
        """Record {relpath: size} of every file of a committed step (primary host only)."""
        if not self._is_primary():
            return
        root = self._step_dir(step)
        files = {}
        for item in _ITEMS:  # only item data: Orbax may legitimately touch step-level metadata
            for dirpath, _, names in os.walk(os.path.join(root, item)):
                for n in names:
                    p = os.path.join(dirpath, n)
                    files[os.path.relpath(p, root)] = os.path.getsize(p)
        tmp = os.path.join(root, MANIFEST_NAME + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"step": step, "files": files}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(root, MANIFEST_NAME))

    def check_step(self, step: int) -> str | None:
        """Cheap integrity check of a step on disk: None if it looks complete, else why not (:func:`check_step_dir`)."""
        return check_step_dir(self._step_dir(step))

    def _quarantine(self, step: int, reason: str) -> None:
        """Move a bad step to corrupt/<step>.<time> so it is neither restored nor blocks a re-save."""
        if self._is_primary() and os.path.isdir(self._step_dir(step)):
            dest_root = os.path.join(self.directory, CORRUPT_DIR)
            os.makedirs(dest_root, exist_ok=True)
            dest = os.path.join(dest_root, f"{step}.{int(time.time() * 1e3)}")
            os.replace(self._step_dir(step), dest)
            log.warning("checkpoint step %d in %s is corrupt (%s); moved to %s", step, self.directory, reason, dest)
        self._sync(f"quarantine_{step}")
        self._mngr.reload()

    # ------------------------------------------------------------------ saving
    def _finish_pending(self) -> None:
        """Block on the in-flight write; raise CheckpointSaveError if it did not commit."""
        step, self._pending = self._pending, None
        try:
            self._mngr.wait_until_finished()
            self._mngr.check_for_errors()
        except BaseException as e:
            raise CheckpointSaveError(
                f"async save of step {step} to {self.directory} failed: {type(e).__name__}: {e}") from e
        if step is None:
            return
        self._sync(f"verify_{step}")
        reason = self.check_step(step)
        if reason is not None:
            raise CheckpointSaveError(
                f"save of step {step} to {self.directory} did not commit ({reason}); "
                "the background write failed (see the log above)")
        self._write_manifest(step)

    def save(self, step: int, state: Any, meta: Mapping[str, Any], *, force: bool = False) -> None:
        """Start saving ``state`` (any pytree of arrays/scalars) and ``meta`` (JSON dict) as ``step``.

        Returns once device data is copied; the write continues in the background. Any
        error of the *previous* async save is raised here as :class:`CheckpointSaveError`.
        If ``step`` already exists and is intact the call is a no-op (so a SIGTERM save
        right after a periodic save is harmless) unless ``force=True``, which rewrites it.
        An existing but corrupt ``step`` is moved to ``corrupt/`` and rewritten.
        """
        self._check_open()
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step={step!r}: must be a non-negative integer")
        step = int(step)
        try:
            meta = json.loads(json.dumps(dict(meta), default=_json_scalar))
        except (TypeError, ValueError) as e:
            raise TypeError(f"meta for step {step} is not JSON-serialisable: {e}") from e
        self._finish_pending()
        if step in self._mngr.all_steps() or os.path.isdir(self._step_dir(step)):
            reason = self.check_step(step)
            if reason is not None:
                self._quarantine(step, reason)
            elif not force:
                log.info("checkpoint step %d already exists in %s; not saving again", step, self.directory)
                return
            else:
                self._mngr.delete(step)
                self._mngr.reload()
        ocp = self._ocp
        try:
            self._mngr.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        except BaseException as e:
            raise CheckpointSaveError(
                f"save of step {step} to {self.directory} failed: {type(e).__name__}: {e}") from e
        self._pending = step
        if not self.async_save:
            self._finish_pending()

    def wait(self) -> None:
        """Block until the last save is durable on disk; raise CheckpointSaveError if it failed."""
        if not self._closed:
            self._finish_pending()

    def close(self) -> None:
        """``wait()`` then release Orbax's threads. Idempotent. Raises like ``wait()``."""
        if self._closed:
            return
        try:
            self._finish_pending()
        finally:
            self._closed = True
            self._mngr.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def all_steps(self) -> list[int]:
        """Committed steps on disk, ascending (after waiting for an in-flight save)."""
        self._check_open()
        self._finish_pending()
        self._mngr.reload()
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> int | None:
        """Newest committed step that passes :meth:`check_step`, or None.

        Waits for an in-flight save first. Steps failing the check are skipped with a
        :class:`CheckpointFallbackWarning` (not moved; ``restore`` and ``save`` do that).
        """
        for step in reversed(self.all_steps()):
            reason = self.check_step(step)
            if reason is None:
                return step
            msg = f"skipping checkpoint step {step} in {self.directory}: {reason}"
            log.warning(msg)
            warnings.warn(msg, CheckpointFallbackWarning, stacklevel=2)
        return None

    def read_meta(self, step: int) -> dict:
        """The JSON meta of committed ``step`` alone (no array is read): e.g. which layout the state holds."""
        self._check_open()
        r = self._mngr.restore(int(step), args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore()))
        return dict(r.meta)

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict]:
        """Restore ``(state, meta)`` from ``step`` (None: ``latest_step()``), resharded as asked.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` whose every leaf has a
        ``sharding`` (see :func:`abstract_state`); the returned state has that structure,
        dtypes and shardings, with jax.Array leaves. ``meta`` is the dict given to save().

        If ``step`` is corrupt, each older step is tried in turn: the first that restores is
        returned, a :class:`CheckpointFallbackWarning` is issued, and the newer bad steps are
        moved to ``corrupt/``. ``self.restored_step`` tells which step was returned. Raises
        :class:`CheckpointRestoreError` if ``step`` does not exist or nothing restores.
        """
        import jax

        ocp = self._ocp
        missing = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path(abstract_state)
                   if getattr(x, "sharding", None) is None]
        if missing:
            raise ValueError(f"abstract_state leaves without a sharding: {', '.join(missing[:5])}; "
                             "build it with scaling.checkpoint.abstract_state(tree, shardings)")
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointRestoreError(f"no restorable checkpoint in {self.directory}")
        steps = self.all_steps()
        if step not in steps:
            raise CheckpointRestoreError(f"no checkpoint for step {step} in {self.directory} (have {steps})")
        failed: list[tuple[int, str]] = []
        last_exc: BaseException | None = None
        for s in [x for x in reversed(steps) if x <= step]:
            reason = self.check_step(s)
            if reason is None:
                try:
                    r = self._mngr.restore(s, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                    state, meta = r.state, r.meta
                    jax.block_until_ready(state)
                except Exception as e:  # corrupt data, or a target that does not match
                    last_exc, reason = e, " ".join(f"{type(e).__name__}: {e}".split())[:200]
            if reason is None:
                if failed:
                    msg = (f"checkpoint step(s) {[f for f, _ in failed]} in {self.directory} could not be "
                           f"restored ({failed[0][1]}); fell back to step {s}")
                    log.warning(msg)
                    warnings.warn(msg, CheckpointFallbackWarning, stacklevel=2)
                    for f, why in failed:
                        self._quarantine(f, why)
                self.restored_step = s
                return state, dict(meta)
            log.warning("checkpoint step %d in %s cannot be restored: %s", s, self.directory, reason)
            failed.append((s, reason))
        raise CheckpointRestoreError(
            f"no checkpoint <= step {step} in {self.directory} could be restored: "
            + "; ".join(f"step {s}: {why}" for s, why in failed)) from last_exc


# ---------------------------------------------------------------------- SIGTERM
class SigtermGuard:
    """Turns SIGTERM into a flag the training loop polls at step boundaries.

    The signal handler only records the request (running a save inside a signal handler
    could catch the loop between donating the old state and receiving the new one).
    ``check()`` -- called by the loop after each step -- runs ``callback`` once when a
    request is pending and returns True, telling the loop to stop. Leaving the ``with``
    block runs a still-pending callback (if the block exits without an exception) and
    restores the previous handlers. A second SIGTERM while one is pending restores the
    previous handler and re-sends the signal, so an unresponsive process can still be killed.
    """

    def __init__(self, callback: Callable[[], Any] | None, signals=(signal.SIGTERM,)):
        self.callback = callback
        self.signals = tuple(signals)
        self.received: int | None = None  # signal number, once one arrived
        self._done = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            log.warning("install_sigterm_handler called off the main thread; SIGTERM will not be caught")
            return
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # second signal: give up gracefully-ness
            self.uninstall()
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        log.warning("received signal %d; will checkpoint and stop at the next step boundary", signum)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def check(self) -> bool:
        """At a step boundary: if a signal arrived, run the callback (once) and return True."""
        if self.received is None:
            return False
        if not self._done:
            self._done = True
            if self.callback is not None:
                self.callback()
        return True

    def uninstall(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> "SigtermGuard":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.check()
        finally:
            self.uninstall()


def install_sigterm_handler(callback: Callable[[], Any] | None = None, *, signals=(signal.SIGTERM,)) -> SigtermGuard:
    """Catch SIGTERM (and any other ``signals``) so the trainer can save before exiting.

    Returns a :class:`SigtermGuard` (also a context manager). Poll ``guard.check()`` after
    each step; when it returns True the callback (typically ``ckpt.save(step, state, meta,
    ...)`` followed by nothing -- the caller then calls ``ckpt.close()`` and exits) has run.
    """
    return SigtermGuard(callback, signals)
