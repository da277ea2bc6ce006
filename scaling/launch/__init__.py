"""Launching sweeps: one on-disk protocol (:mod:`.state`), one worker loop (:mod:`.worker`),
several backends that start workers (:mod:`.local`, :mod:`.slurm`, :mod:`.ray`), and the
``scaling plan | sweep | status`` commands (:mod:`.commands`).

Every backend starts workers that run :func:`scaling.launch.worker.run_worker` on the same
sweep directory; per-cell locks decide who trains what, so backends can be mixed, killed
and relaunched freely.
"""
