"""Cost of running DARTS as a recorded, resumable job, and of training a genotype, on MNIST-1D (CPU, one thread).

1. ``nas darts`` per epoch: the DARTS job run by the job runner (per-epoch rows in SQLite + the atomic
   ``darts_checkpoint.pt``) against the bare ``nas.darts.search`` (the baseline) on the same scaled-down config and
   data.
2. ``train_genotype`` per epoch for DARTS_V2 with DARTS's options (cutout, drop-path, auxiliary head) against
   plain training (the baseline).
3. DARTS_V2 at C = 36, 20 cells: parameters against the paper's 3.3M.

    python bench/bench_darts_job.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

LAYERS, C, BATCH, LIMIT, EPOCHS = 5, 8, 64, 500, 2  # DARTS's search: 8 cells, C = 16, batch 64, 50 epochs
TRAIN = dict(C=16, layers=8)  # DARTS's evaluation: 20 cells, C = 36
PAPER_PARAMS = 3.3e6


def _timed(run: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def darts_figures() -> None:
    from evaluators.data import split_dataset
    from nas.darts import DartsConfig, search
    from nas.supernet import SupernetConfig
    from search.jobs import Runner, create_job, run_job
    from search.jobs._darts import CHECKPOINT_FILE, DartsJob, DartsJobConfig, load_data
    from search.store import Store

    config = DartsJobConfig("mnist1d", DartsConfig(net=SupernetConfig(layers=LAYERS, C=C), epochs=EPOCHS,
                                                   batch_size=BATCH), limit=LIMIT)  # fmt: skip
    data = load_data(config)
    train, val = split_dataset(data.train, config.split_fraction, seed=config.search.seed)
    tiny = DartsConfig(net=SupernetConfig(layers=1, C=2), epochs=1, batch_size=BATCH)
    search(tiny, (train.tensors[0][:8], train.tensors[1][:8]), (val.tensors[0][:8], val.tensors[1][:8]))  # warm-up
    _, bare_wall, bare_cpu = _timed(lambda: search(config.search, train, val))
    spent = {"save_file": 0.0, "_record_epoch": 0.0}
    Runner.save_file = _clocked(Runner.save_file, spent, "save_file")  # type: ignore[method-assign]
    DartsJob._record_epoch = _clocked(DartsJob._record_epoch, spent, "_record_epoch")  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder, Store.for_run(Path(folder) / "bench") as store:
        run = Path(folder) / "bench"
        job = create_job(store, "bench", DartsJob, config, factory=lambda c, context: DartsJob(c, context, data),
                         run_dir=run, show_progress=False)
        _, job_wall, job_cpu = _timed(lambda: run_job(job))
        size = (run / CHECKPOINT_FILE).stat().st_size / 2**20
    steps = -(-LIMIT // 2 // BATCH)
    print(f"\nnas darts on mnist1d ({LIMIT} training examples split 50/50), {LAYERS} cells, C={C}, batch {BATCH}, "
          f"{steps} steps/epoch, first order, CPU, 1 thread")  # fmt: skip
    print(f"{'':>22} {'s/epoch (wall)':>15} {'CPU s/epoch':>12}")
    print(f"{'darts.search (base)':>22} {bare_wall / EPOCHS:>15.2f} {bare_cpu / EPOCHS:>12.2f}")
    print(f"{'DARTS job':>22} {job_wall / EPOCHS:>15.2f} {job_cpu / EPOCHS:>12.2f}")
    print(f"ratio job/base: wall x{job_wall / bare_wall:.3f}, CPU x{job_cpu / bare_cpu:.3f}")
    print(f"recording per epoch: checkpoint file {spent['save_file'] / EPOCHS * 1e3:.0f} ms ({size:.2f} MiB), "
          f"database rows {spent['_record_epoch'] / EPOCHS * 1e3:.0f} ms = "
          f"{sum(spent.values()) / job_wall:.2%} of the job's wall time")  # fmt: skip


def _clocked(function: Callable[..., Any], spent: dict[str, float], name: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return timed


def train_figures() -> None:
    from nas.genotypes import DARTS_V2
    from nas.network import NetworkConfig
    from evaluators.data import get_dataset
    from nas.train import TrainConfig, train_genotype

    data = get_dataset("mnist1d", LIMIT)
    net = NetworkConfig(**TRAIN)  # type: ignore[arg-type]
    plain = TrainConfig(net=net, epochs=EPOCHS, batch_size=96)
    options = TrainConfig(net=net, epochs=EPOCHS, batch_size=96, cutout=8, drop_path=0.2, auxiliary_weight=0.4)
    base, base_wall, base_cpu = _timed(lambda: train_genotype(DARTS_V2, data, plain))
    _, full_wall, full_cpu = _timed(lambda: train_genotype(DARTS_V2, data, options))
    print(f"\ntrain_genotype DARTS_V2 on mnist1d ({LIMIT} training examples), {TRAIN['layers']} cells, "
          f"C={TRAIN['C']}, batch 96, {base.params:,} parameters, CPU, 1 thread")  # fmt: skip
    print(f"{'':>30} {'s/epoch (wall)':>15} {'CPU s/epoch':>12}")
    print(f"{'plain (base)':>30} {base_wall / EPOCHS:>15.2f} {base_cpu / EPOCHS:>12.2f}")
    print(f"{'cutout 8, drop-path 0.2, aux':>30} {full_wall / EPOCHS:>15.2f} {full_cpu / EPOCHS:>12.2f}")
    print(f"ratio options/plain: wall x{full_wall / base_wall:.3f}, CPU x{full_cpu / base_cpu:.3f}")


def size_figures() -> None:
    from nas.genotypes import DARTS_V2
    from nas.network import Network, NetworkConfig, count_parameters

    model = Network(DARTS_V2, NetworkConfig(C=36, layers=20, auxiliary=True), in_channels=3, dim=2)
    params, with_aux = count_parameters(model), count_parameters(model, auxiliary=True)
    print(f"\nDARTS_V2, C=36, 20 cells, CIFAR-10: {params:,} parameters without the auxiliary head "
          f"(paper: 3.3M; ratio x{params / PAPER_PARAMS:.3f}), {with_aux:,} with it")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)
    size_figures()
    darts_figures()
    train_figures()
