"""Torch state_dicts in and out of jaxconv models, as numpy, through the audited key map.

A state_dict here is ``{torch key: numpy array in torch's layout}``: what
``torch.save(model.state_dict(), 'x.pth')`` holds, or a ``.safetensors`` file. Reading a
``.safetensors`` file and every model-side step need no torch; torch is imported only to read
or write a ``.pth`` / ``.pt`` file, and then with ``weights_only=True``, so a file holding
pickled code is refused instead of run.

Loading follows timm's fine-tuning rules: a classifier head of another class count keeps the
model's fresh initialisation, a first conv of another input width is adapted
(:func:`adapt_input_conv`), each adaptation is reported in one line, and any other mismatch is
a ``TransferError`` listing every key, raised before anything is written.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv import layers as L
from jaxconv.keymap import KeyMapEntry, TransferError, check, flax_variables, key_map

TORCH_SUFFIXES = ('.pth', '.pt', '.bin')
SAFETENSORS_SUFFIX = '.safetensors'


class WeightFileError(ValueError):
    """A weight file that cannot be read as a state_dict (missing, pickled code, not a dict of
    tensors, an unknown format)."""


# -- the model side ------------------------------------------------------------------------------
def state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters and BatchNorm buffers as a torch state_dict of numpy arrays.

    ``num_batches_tracked`` is int64 as torch stores it, so ``load_state_dict(strict=True)`` on
    the torch twin gets exactly the dtypes it holds.
    """
    out = {}
    for e in key_map(model):
        # A writable C-order copy: torch.from_numpy and safetensors want one.
        value = np.array(e.to_torch(np.asarray(e.variable[...])), order='C', copy=True)
        if e.torch_key.endswith('num_batches_tracked'):
            value = value.astype(np.int64)
        out[e.torch_key] = value
    return out


def head_layers(model: nnx.Module) -> list[nnx.Module]:
    """The classifier head: the model's last Conv2d/Linear, plus every other Linear producing
    ``num_classes`` outputs (GoogLeNet's auxiliary classifiers)."""
    layers = [
        layer for _, layer in L.named_layers(model) if isinstance(layer, (L.Conv2d, L.Linear))
    ]
    if not layers:
        return []
    last = layers[-1]
    width = last.out_features if isinstance(last, L.Linear) else last.out_channels
    return [
        layer
        for layer in layers
        if layer is last or (isinstance(layer, L.Linear) and layer.out_features == width)
    ]


def first_conv(model: nnx.Module) -> L.Conv2d | None:
    return next((layer for _, layer in L.named_layers(model) if isinstance(layer, L.Conv2d)), None)


def adapt_input_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """A first-conv weight (O, I, kh, kw) of ``I`` input channels made ``in_channels`` wide.

    timm's ``adapt_input_conv``: for 1 channel the RGB filters are summed (a grey image
    through the summed filter gives what the RGB filters gave on the grey image copied into
    three channels); for more, the RGB filters are repeated and scaled by 3 / in_channels, so
    the response to a constant input keeps its size.
    """
    out, old, kh, kw = weight.shape
    dtype = weight.dtype
    w = weight.astype(np.float32)
    if in_channels == 1:
        if old > 3:
            if old % 3:
                raise TransferError(f'cannot adapt a {old}-channel first conv to 1 channel')
            w = w.reshape(out, old // 3, 3, kh, kw).sum(axis=2)
        else:
            w = w.sum(axis=1, keepdims=True)
    elif in_channels != old:
        if old != 3:
            raise TransferError(
                f'cannot adapt a {old}-channel first conv to {in_channels} '
                f'channels (only RGB weights are repeated)'
            )
        w = np.tile(w, (1, math.ceil(in_channels / 3), 1, 1))[:, :in_channels] * (3 / in_channels)
    return w.astype(dtype)


def load_state_dict(
    model: nnx.Module, state: dict[str, np.ndarray], *, what: str = 'the weights'
) -> list[str]:
    """Copy the torch ``state`` into ``model`` (in place); returns one line per adaptation.

    A head weight or bias whose class count differs keeps the model's initialisation; a first
    conv weight whose input width differs is adapted (:func:`adapt_input_conv`). Every other
    missing, unused or misshapen key is a problem; with any, ``TransferError`` lists all of them
    and the model is left untouched.
    """
    entries = key_map(model)
    head = {id(layer) for layer in head_layers(model)}
    conv = first_conv(model)
    problems, writes, adaptations = [], [], []
    for e in entries:
        if e.torch_key not in state:
            problems.append(f'missing key {e.torch_key} (for {e.flax_path})')
            continue
        source = np.asarray(state[e.torch_key])
        target = e.variable[...]
        want = _torch_shape(e, target)
        if source.shape != want:
            fix = _adaptation(e, source, want, head, conv)
            if fix is None:
                problems.append(
                    f'{e.torch_key}: {tuple(source.shape)} in {what} does not fit '
                    f'{e.flax_path} {want}'
                )
                continue
            line, value = fix
            adaptations.append(f'{e.torch_key}: {line}')
            if value is None:
                continue
        else:
            value = e.to_flax(source)
        writes.append((e.variable, jnp.array(value, dtype=target.dtype, copy=True)))
    used = {e.torch_key for e in entries}
    problems += [
        f'unexpected key {k} {tuple(np.shape(v))}' for k, v in state.items() if k not in used
    ]
    mapped = {id(e.variable) for e in entries}
    problems += [
        f'model variable {p} has no torch key'
        for p, v in flax_variables(model).items()
        if id(v) not in mapped
    ]
    check(problems, f'{what} do not fit {type(model).__name__}')
    for var, value in writes:
        var[...] = value
    return adaptations


def _torch_shape(e: KeyMapEntry, target) -> tuple[int, ...]:
    return tuple(e.to_torch(np.zeros(target.shape, np.int8)).shape)


def _adaptation(
    e: KeyMapEntry, source: np.ndarray, want: tuple[int, ...], head: set[int], conv: L.Conv2d | None
):
    """``(report line, value or None to keep the initialisation)``, or None: not adaptable.
    ``want`` is the model's shape in torch's layout."""
    if id(e.layer) in head and source.ndim == len(want) and source.shape[1:] == want[1:]:
        return (
            f'head re-initialised for {want[0]} classes (the weights have {source.shape[0]})',
            None,
        )
    if (
        e.layer is conv
        and e.torch_key.endswith('.weight')
        and conv.groups == 1
        and source.ndim == 4
        and source.shape[0] == want[0]
        and source.shape[2:] == want[2:]
    ):
        adapted = adapt_input_conv(source, want[1])
        how = 'summed over' if want[1] == 1 else 'repeated and rescaled from'
        return (
            f'first conv adapted to {want[1]} input channel(s) ({how} {source.shape[1]})',
            e.to_flax(adapted),
        )
    return None


# -- files ---------------------------------------------------------------------------------------
def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b'\0')
        with open(f, 'rb') as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b''):
                digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state_dict file as ``{key: numpy array}``; ``WeightFileError`` when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f'{path}: no such file')
    if path.suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise WeightFileError(
        f'{path}: unknown weight format {path.suffix!r}; expected '
        f'{", ".join(TORCH_SUFFIXES)} (torch.save) or {SAFETENSORS_SUFFIX}'
    )


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightFileError(f'{path}: not a readable safetensors file ({e})') from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise WeightFileError(
            f'{path}: reading a torch file needs torch; convert it to '
            f'{SAFETENSORS_SUFFIX} or install torch'
        ) from None
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError ... here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightFileError(
            f'{path}: not a state_dict torch can load with weights_only=True '
            f'(pickled code or a damaged file are refused): {first}'
        ) from None
    if not isinstance(obj, dict):
        raise WeightFileError(
            f'{path}: holds a {type(obj).__name__}, not a state_dict '
            f'(save model.state_dict(), not the model)'
        )
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        more = ' ...' if len(bad) > 10 else ''
        raise WeightFileError(
            f'{path}: not a state_dict of tensors; {len(bad)} entr(y/ies) are '
            f'not tensors: {", ".join(bad[:10])}{more}'
        )
    return {k: v.detach().cpu().numpy().copy() for k, v in obj.items()}


def write_state_dict(state: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``state`` as ``.safetensors`` (no torch) or ``.pt``/``.pth`` (``torch.save``),
    through a temporary file, so an interrupted write leaves no half file under ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp))
    elif path.suffix in TORCH_SUFFIXES:
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, tmp)
    else:
        raise WeightFileError(
            f'{path}: unknown weight format {path.suffix!r}; use '
            f'{", ".join(TORCH_SUFFIXES)} or {SAFETENSORS_SUFFIX}'
        )
    os.replace(tmp, path)
    return path
