"""``fit(config)``: the training loop, from a config to a trained, checkpointed, plotted run.

Order of work, so that a failing run fails before it writes anything: resolve and check the
config, join the cluster, build the mesh and the model (minimum image size), check the workdir,
load the data; only then is the workdir written. Each epoch: train (one jitted step per batch,
step metrics fetched every ``SYNC_EVERY`` steps), evaluate, append a line to ``metrics.jsonl``,
checkpoint. A signal ends the run at the next fetch with a checkpoint of that step, from which
``--resume`` continues exactly: the batch order is a function of (seed, epoch), the dropout
masks of (seed, step), and the partial sums of the interrupted epoch travel in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxconv.data import (
    DATASETS,
    FOLDER,
    FolderDataset,
    epoch_batches,
    eval_batches,
    load_folder,
    load_split,
    steps_per_epoch,
    tfds_data_dir,
)
from jaxconv.models.base import ImageSizeError
from jaxconv.optim import make_optimizer
from jaxconv.registry import create_model
from jaxconv.training import conv_plan, finetune
from jaxconv.training import lock as workdir_lock
from jaxconv.training import steps as train_steps
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.config import TrainConfig, resolve, run_fields
from jaxconv.training.conv_plan import RunPlan
from jaxconv.training.errors import ConfigError, NonFiniteLossError
from jaxconv.training.metrics import (
    CURVES_FILE,
    SUMMARY_FILE,
    MetricsLog,
    plot_curves,
    write_json_atomic,
)
from jaxconv.training.sharding import (
    DataParallel,
    check_batch_size,
    data_parallel,
    initialize_distributed,
)
from jaxconv.training.signals import StopRequest
from jaxconv.training.workdir import plan_workdir

#: Steps between two fetches of the step metrics. A fetch waits for the device, so fetching
#: every step would stall the pipeline; each fetch also checks the loss and the stop request.
SYNC_EVERY = 10

#: A mean cross-entropy above this (chance is ln(num_classes), 2.3 for 10 classes) gives the right
#: class a probability below e^-1000: the run has diverged even where float32 has not overflowed
#: yet (``--lr 1e30`` gives finite losses around 1e31).
DIVERGED_LOSS = 1e3


@dataclasses.dataclass
class FitResult:
    """What one call of :func:`fit` did.

    ``status`` is 'completed' or 'interrupted' (then ``signum`` says by which signal).
    ``step_losses`` are the training losses of the steps run by THIS call, starting at global
    step ``first_step``; ``records`` are all epoch records of the run (also in metrics.jsonl).
    """

    config: TrainConfig
    status: str
    records: list[dict[str, Any]]
    step_losses: list[float]
    first_step: int
    summary: dict[str, Any] | None = None
    signum: int | None = None


@dataclasses.dataclass
class EpochSums:
    """Running sums of one epoch's training metrics (checkpointed mid-epoch)."""

    loss: float = 0.0
    correct: int = 0
    steps: int = 0


@dataclasses.dataclass
class Throughput:
    """Training images and seconds, leaving out each call's first step (it compiles)."""

    images: int = 0
    seconds: float = 0.0

    def rate(self, since: Throughput | None = None) -> float | None:
        images = self.images - (since.images if since else 0)
        seconds = self.seconds - (since.seconds if since else 0.0)
        return images / seconds if seconds > 0 else None


def learning_rate(config: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step: constant, or cosine-decayed to 0."""
    if config.schedule == 'cosine' and total_steps > 0:
        return optax.cosine_decay_schedule(config.lr, decay_steps=total_steps)
    return optax.constant_schedule(config.lr)


def log(message: str) -> None:
    """One line on stdout from the first process, above any progress bar."""
    if jax.process_index() == 0:
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


def build_model(config: TrainConfig, spec):
    try:
        return create_model(
            config.arch,
            num_classes=spec.num_classes,
            in_channels=spec.image_shape[-1],
            image_size=config.image_size,
            rngs=train_steps.model_rngs(config.seed),
            dtype=jnp.dtype(config.dtype),
        )
    except ImageSizeError as e:
        raise ConfigError(f'--image-size: {e}') from None


def check_steps_per_epoch(config: TrainConfig, spec) -> int:
    n = min(spec.num_train, config.limit_train or spec.num_train)
    steps = steps_per_epoch(n, config.batch_size)
    if steps == 0:
        raise ConfigError(
            f'{n} training examples make no full batch of --batch-size '
            f'{config.batch_size}; lower the batch size or raise --limit-train'
        )
    return steps


def open_folder(config: TrainConfig) -> FolderDataset:
    """The --dataset folder images, decoded (cached in the tfds data dir). Read before the model
    is built, because its spec (classes, channels, mean/std) comes from the images."""
    folder = load_folder(
        config.data_dir,
        image_size=config.image_size,
        channels=config.channels,
        val_fraction=config.val_fraction,
        seed=config.seed,
        cache_dir=tfds_data_dir(config.tfds_dir),
    )
    spec = folder.spec
    log(
        f'{spec.display_name}: {spec.num_classes} classes ({", ".join(spec.class_names)}), '
        f'{spec.num_train} training images, test: {spec.num_test} from {folder.test_source}; '
        f'{spec.image_shape[-1]} channel(s), mean {spec.mean}, std {spec.std}'
    )
    return folder


def load_data(config: TrainConfig, folder: FolderDataset | None = None):
    """(train images, train labels, test images, test labels), cut to the --limit-* sizes."""
    if folder is not None:
        train_x, train_y, test_x, test_y = (
            folder.train_x,
            folder.train_y,
            folder.test_x,
            folder.test_y,
        )
    else:
        kw = dict(data_dir=config.data_dir, tfds_dir=config.tfds_dir)
        train_x, train_y = load_split(config.dataset, 'train', **kw)
        test_x, test_y = load_split(config.dataset, 'test', **kw)
    return (
        train_x[: config.limit_train],
        train_y[: config.limit_train],
        test_x[: config.limit_eval],
        test_y[: config.limit_eval],
    )


def stop_agreed(stop: StopRequest) -> bool:
    """Whether to stop now; all processes take the same decision at the same step."""
    if jax.process_count() == 1:
        return stop.signum is not None
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(stop.signum is not None))))


class Run:
    """The state of one run and the steps that advance it (one epoch, an evaluation, a save)."""

    def __init__(
        self,
        config: TrainConfig,
        dp: DataParallel,
        spec,
        model,
        data,
        steps_per_epoch: int,
        *,
        started: float,
    ):
        self.config, self.dp, self.spec, self.spe = config, dp, spec, steps_per_epoch
        self.train_x, self.train_y, self.test_x, self.test_y = data
        split = finetune.freeze_backbone(train_steps.split_model(model), config.trainable)
        self.num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(split.params))
        self.lr = learning_rate(config, config.epochs * steps_per_epoch)
        tx = make_optimizer(
            config.optimizer, self.lr, weight_decay=config.weight_decay, momentum=config.momentum
        )
        tx = finetune.restrict(tx, model, split.params, config.trainable)
        self.state = dp.replicate(train_steps.init_state(split, tx))
        self.rngs = dp.replicate(split.rngs)
        shardings = dict(replicated=dp.replicated, batch=dp.batch)
        self.train_step = train_steps.make_train_step(
            split,
            tx,
            spec=spec,
            image_size=config.image_size,
            seed=config.seed,
            augment=config.augment,
            label_smoothing=config.label_smoothing,
            **shardings,
        )
        self.eval_step = train_steps.make_eval_step(
            split, spec=spec, image_size=config.image_size, **shardings
        )
        self.checkpoints = Checkpoints(config.workdir, max_to_keep=config.keep_checkpoints)
        self.global_step = self.first_step = 0
        self.sums = EpochSums()
        self.elapsed_before = 0.0
        self.started = started  # perf_counter() when fit was called
        self.step_losses: list[float] = []
        self.throughput = Throughput()

    # -- checkpoints -----------------------------------------------------------------------
    def restore_latest(self) -> None:
        latest = self.checkpoints.latest_intact_step(report=log)
        if latest is None:
            log(f'no checkpoint in {self.checkpoints.directory}: starting from scratch')
            return
        self.state, meta = self.checkpoints.restore(latest, like=self.state)
        self.global_step = self.first_step = meta['global_step']
        self.elapsed_before = meta['elapsed_seconds']
        self.sums = EpochSums(**meta['partial']) if meta.get('partial') else EpochSums()
        log(
            f'resuming from checkpoint {latest} (epoch {self.epoch + 1}, '
            f'step {self.global_step % self.spe} of {self.spe})'
        )

    def save(self) -> None:
        """Checkpoint the current step; mid-epoch with the epoch's partial sums."""
        mid_epoch = self.global_step % self.spe != 0
        meta = {
            'global_step': self.global_step,
            'epoch': self.epoch,
            'step_in_epoch': self.global_step % self.spe,
            'steps_per_epoch': self.spe,
            'partial': dataclasses.asdict(self.sums) if mid_epoch else None,
            'elapsed_seconds': self.elapsed(),
            'seed': self.config.seed,
            'dropout_rng': 'fold_in(dropout_key(seed), step)',
            'run': run_fields(self.config),
        }
        self.checkpoints.save(self.global_step, self.state, meta)

    # -- progress --------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.global_step // self.spe

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    # -- one epoch -------------------------------------------------------------------------
    def train_epoch(self, stop: StopRequest) -> bool:
        """Train to the end of the current epoch; False if a stop request ended it early."""
        config, epoch, start = self.config, self.epoch, self.global_step % self.spe
        batch = config.batch_size
        bar = tqdm(
            total=self.spe * batch,
            initial=start * batch,
            unit='img',
            unit_scale=True,
            desc=f'epoch {epoch + 1}/{config.epochs}',
            file=sys.stderr,
            leave=False,
            disable=not (config.progress and jax.process_index() == 0),
            dynamic_ncols=True,
        )
        # The first step of a call compiles: the clock starts once it is done.
        clock = None if self.global_step == self.first_step else time.perf_counter()
        pending: list[dict[str, jax.Array]] = []
        batches = epoch_batches(
            self.train_x,
            self.train_y,
            batch,
            seed=config.seed,
            epoch=epoch,
            start_step=start,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        try:
            for i, (x, y) in enumerate(batches, start):
                self.state, metrics = self.train_step(
                    self.state, self.rngs, *self.dp.global_batch(x, y)
                )
                pending.append(metrics)
                self.global_step += 1
                first_of_call = self.global_step == self.first_step + 1
                if not (first_of_call or len(pending) == SYNC_EVERY or i == self.spe - 1):
                    continue
                self._account(jax.device_get(pending))
                now = time.perf_counter()
                if clock is not None:
                    self.throughput.images += len(pending) * batch
                    self.throughput.seconds += now - clock
                clock = now
                bar.update(len(pending) * batch)
                bar.set_postfix(loss=f'{self.sums.loss / self.sums.steps:.4f}', refresh=False)
                pending = []
                if i < self.spe - 1 and stop_agreed(stop):
                    return False
            return True
        finally:
            bar.close()

    def _account(self, fetched: list[dict[str, np.ndarray]]) -> None:
        """Add fetched step metrics to the epoch sums; stop at the first non-finite loss."""
        for k, metrics in enumerate(fetched):
            loss = float(metrics['loss'])
            step = self.global_step - len(fetched) + k
            if not math.isfinite(loss) or loss > DIVERGED_LOSS:
                last_good = self.checkpoints.latest_step()
                kept = (
                    'no checkpoint was written yet'
                    if last_good is None
                    else f'the last good checkpoint (step {last_good}) and metrics are kept'
                )
                raise NonFiniteLossError(
                    f'the training loss is {loss} at step {step} (epoch {step // self.spe + 1}, '
                    f'batch {step % self.spe + 1} of {self.spe}); stopped: {kept}. Try a lower '
                    f'--lr',
                    step=step,
                    epoch=step // self.spe,
                )
            self.step_losses.append(loss)
            self.sums.loss += loss
            self.sums.correct += int(metrics['correct'])
            self.sums.steps += 1

    def evaluate(self) -> tuple[float, float]:
        """(mean loss, accuracy) on the test examples, in eval mode."""
        sums = []
        for x, y, mask in eval_batches(
            self.test_x,
            self.test_y,
            self.config.batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            sums.append(self.eval_step(self.state, self.rngs, *self.dp.global_batch(x, y, mask)))
        sums = jax.device_get(sums)
        count = max(sum(int(s['count']) for s in sums), 1)
        return (
            sum(float(s['loss_sum']) for s in sums) / count,
            sum(int(s['correct']) for s in sums) / count,
        )

    def finish_epoch(self, epoch_start: float, throughput_before: Throughput) -> dict[str, Any]:
        """Evaluate and return the epoch's metrics record; the epoch sums start again."""
        train_seconds = time.perf_counter() - epoch_start
        test_loss, test_accuracy = self.evaluate()
        sums, self.sums = self.sums, EpochSums()
        return {
            'epoch': self.epoch - 1,
            'step': self.global_step,
            'train_loss': sums.loss / sums.steps,
            'train_accuracy': sums.correct / (sums.steps * self.config.batch_size),
            'test_loss': test_loss,
            'test_accuracy': test_accuracy,
            'lr': float(self.lr(self.global_step - 1)),
            'images_per_sec': self.throughput.rate(since=throughput_before),
            'train_seconds': train_seconds,
            'epoch_seconds': time.perf_counter() - epoch_start,
            'elapsed_seconds': self.elapsed(),
        }

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The run at a glance. ``images_per_sec``: training throughput of this call of ``fit``
        (for a resumed run, the part it ran), compilation and evaluation left out."""
        last = records[-1] if records else {}
        return {
            'arch': self.config.arch,
            'dataset': self.config.dataset,
            'epochs': len(records),
            'final_test_accuracy': last.get('test_accuracy'),
            'best_test_accuracy': max((r['test_accuracy'] for r in records), default=None),
            'final_test_loss': last.get('test_loss'),
            'final_train_loss': last.get('train_loss'),
            'final_train_accuracy': last.get('train_accuracy'),
            'images_per_sec': self.throughput.rate(),
            'wall_seconds': self.elapsed(),
            'num_params': self.num_params,
            'devices': self.dp.num_devices,
            'processes': jax.process_count(),
            'platform': jax.devices()[0].platform,
            'jax_version': jax.__version__,
            'config': self.config.to_dict(),
        }


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    rate = record['images_per_sec']
    return (
        f'epoch {record["epoch"] + 1}/{epochs}: train loss {record["train_loss"]:.4f} '
        f'acc {record["train_accuracy"]:.4f} | test loss {record["test_loss"]:.4f} '
        f'acc {record["test_accuracy"]:.4f} | '
        f'{f"{rate:.0f} img/s" if rate else "- img/s"} | checkpoint {record["step"]} saved'
    )


@workdir_lock.released_after
def fit(config: TrainConfig) -> FitResult:
    """Train ``config.arch`` on ``config.dataset`` as configured; see the module docstring.

    Raises ``ConfigError`` (nothing written), ``jaxconv.data.DataError`` (nothing written) and
    ``NonFiniteLossError`` (the last good checkpoint and metrics stay). Returns a ``FitResult``
    with status 'interrupted' when SIGINT/SIGTERM stopped the run after checkpointing.
    """
    started = time.perf_counter()
    config = resolve(config)
    if config.dtype == 'float64':  # before any array exists: float64 needs x64 mode
        jax.config.update('jax_enable_x64', True)
    initialize_distributed(
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes,
        process_id=config.process_id,
        autodetect=config.distributed,
    )
    dp = data_parallel(config.devices)
    check_batch_size(config.batch_size, dp.num_devices)
    folder = open_folder(config) if config.dataset == FOLDER else None
    spec = folder.spec if folder is not None else DATASETS[config.dataset]
    spe = check_steps_per_epoch(config, spec)
    model = build_model(config, spec)
    if jax.process_index() == 0:  # a run is training there: refuse before any other work
        workdir_lock.check_workdir(config.workdir)
    config = finetune.initialise(config, model, log=log)  # a bad weight file: nothing written
    plan = plan_workdir(config, spec)
    try:  # the conv plans the run computed with, pinned again on --resume
        conv = RunPlan(config.workdir, conv_plan.read(config.workdir) if config.resume else {})
    except ValueError as e:
        raise ConfigError(f'cannot resume: {e}') from None
    data = load_data(config, folder)

    # Nothing was written up to here (but the folder dataset's decoding cache).
    is_main = jax.process_index() == 0
    if is_main:
        workdir_lock.lock_workdir(config.workdir)
    plan.apply(config, write=is_main, spec=spec)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices('jaxconv: workdir ready')
    run = Run(config, dp, spec, model, data, spe, started=started)
    if config.resume:
        run.restore_latest()
    metrics_log = MetricsLog(config.workdir, enabled=is_main)
    records = metrics_log.keep_epochs_before(run.epoch)
    if not records and is_main:  # no stale summary from an overwritten or restarted run
        (plan.path / SUMMARY_FILE).unlink(missing_ok=True)

    def save():
        if is_main:  # the plans first: a checkpoint never lacks the plans it was computed with
            conv.write()
        run.save()

    status, signum = 'completed', None
    with StopRequest() as stop, conv.active():
        while run.epoch < config.epochs:
            epoch_start, throughput_before = (
                time.perf_counter(),
                dataclasses.replace(run.throughput),
            )
            if not run.train_epoch(stop):
                status, signum = 'interrupted', stop.signum
                save()
                log(
                    f'interrupted by signal {signum} at step {run.global_step}; checkpoint '
                    f'saved in {run.checkpoints.directory}; continue with --resume'
                )
                break
            record = run.finish_epoch(epoch_start, throughput_before)
            records.append(record)
            metrics_log.append(record)
            save()
            log(_epoch_line(record, config.epochs))
            if run.epoch < config.epochs and stop_agreed(stop):
                status, signum = 'interrupted', stop.signum
                log(
                    f'interrupted by signal {signum} after epoch {run.epoch}; continue with '
                    f'--resume'
                )
                break
    run.checkpoints.close()

    summary = run.summary(records) if status == 'completed' else None
    if is_main and summary:
        write_json_atomic(plan.path / SUMMARY_FILE, summary)
    if is_main and records:
        plot_curves(records, plan.path / CURVES_FILE, title=f'{config.arch} on {spec.display_name}')
    return FitResult(config, status, records, run.step_losses, run.first_step, summary, signum)
