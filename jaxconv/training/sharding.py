"""Data parallelism with ``jax.sharding``: one ``Mesh`` axis 'data' over every device used.

Parameters and optimizer state are replicated; each batch is split along its first axis. Under
``jax.jit`` XLA then inserts the gradient all-reduce (and the cross-device BatchNorm statistics)
itself, so the step function is the single-device one. With several processes, each process
loads only its slice of every global batch and ``jax.make_array_from_process_local_data``
assembles the global array; the process slices are contiguous and in process order, matching a
mesh whose devices are listed process by process.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxconv.training.errors import ConfigError

DATA_AXIS = 'data'


def initialize_distributed(
    *, coordinator_address=None, num_processes=None, process_id=None, autodetect: bool = False
) -> None:
    """Join a multi-process JAX cluster; must run before JAX touches any device.

    With explicit arguments the processes meet at ``coordinator_address``; with
    ``autodetect`` JAX reads the cluster from the environment (SLURM, Open MPI, Kubernetes, TPU
    pods). CPU collectives go through gloo, the implementation that works between processes
    without MPI (it only affects the CPU backend).
    """
    if coordinator_address is None and not autodetect:
        return
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    if coordinator_address is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """The mesh and the two shardings a data-parallel step needs."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    def replicate(self, tree):
        """Copy a pytree of host-identical arrays onto every device of the mesh.

        Built from each process's own copy (``jax.device_put`` only reaches the devices of the
        calling process); PRNG key arrays travel as their raw key data.
        """
        sharding = self.replicated

        def put(x):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(
                    put(jax.random.key_data(x)), impl=jax.random.key_impl(x)
                )
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(put, tree)

    def global_batch(self, *local_arrays: np.ndarray) -> tuple[jax.Array, ...]:
        """Assemble each process's slices ``(B / P, ...)`` into global arrays ``(B, ...)``.

        One process holds the whole batch: a plain ``device_put`` (about half the host time).
        """
        if jax.process_count() == 1:
            return tuple(jax.device_put(local_arrays, self.batch))
        return tuple(jax.make_array_from_process_local_data(self.batch, a) for a in local_arrays)


def data_parallel(num_devices: int | None = None) -> DataParallel:
    """A 1-D mesh over the first ``num_devices`` devices (all of them when None).

    Several processes always use every device of the cluster: each process feeds its own.
    """
    devices = jax.devices()
    if num_devices is not None:
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ConfigError(
                f'--devices {num_devices}: a run over {jax.process_count()} '
                f'processes uses all {len(devices)} devices of the cluster'
            )
        if num_devices > len(devices):
            hint = (
                ' (for N fake CPU devices set XLA_FLAGS='
                '--xla_force_host_platform_device_count=N before starting Python)'
                if devices[0].platform == 'cpu'
                else ''
            )
            raise ConfigError(
                f'--devices {num_devices}: only {len(devices)} '
                f'{devices[0].platform} device(s) available{hint}'
            )
        devices = devices[:num_devices]
    return DataParallel(Mesh(np.asarray(devices), (DATA_AXIS,)))


def check_batch_size(batch_size: int, num_devices: int) -> None:
    """Every device gets the same share of a batch, or the batch cannot be sharded."""
    if batch_size % num_devices:
        lower = batch_size // num_devices * num_devices
        options = f'{lower} or {lower + num_devices}' if lower else str(num_devices)
        raise ConfigError(
            f'--batch-size {batch_size} is not divisible by the {num_devices} '
            f'devices; use a multiple of {num_devices} (e.g. {options})'
        )
