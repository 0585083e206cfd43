"""How far float64 training runs differ when only the summation order changes.

    python -m parity.noise_floor [--arch resnet18] [--image-size 33] [--batch-sizes 4,8]
                                 [--optimizer adamw] [--steps 3]

A trajectory bound must sit above the noise of the computation itself, or a correct
implementation fails it by summing in another order. For each batch size this prints the worst
relative parameter error after ``steps`` float64 steps of:

- torch against torch: the same twin, weights and batches, once in NCHW and once in
  ``channels_last`` (torch's own kernels, another summation order);
- jaxconv against torch under each conv lowering mode (``JAXCONV_CONV_LOWERING``), each mode in
  a fresh process so that no compiled step is shared between modes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys

from parity.metrics import set_relative_errors


def _worst(errors: dict[str, float]) -> tuple[str, float]:
    return max(errors.items(), key=lambda kv: kv[1])


def torch_against_itself(arch, image_size, batch_size, optimizer, steps) -> tuple[str, float]:
    import torch

    from parity import execute
    from parity.optimizers import optimizer_case
    from parity.pair import make_pair

    case = optimizer_case(optimizer)
    pair = make_pair(arch, 'float64', image_size=image_size, batch_size=batch_size)
    pair.set_mode('train')
    nchw = pair.torch
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    opts = [case.torch(m.parameters()) for m in (nchw, nhwc)]
    for step in range(steps):
        x, labels = pair.batch(batch_size, step)
        for model, opt in zip((nchw, nhwc), opts):
            t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(torch.float64)
            if model is nhwc:
                t = t.contiguous(memory_format=torch.channels_last)
            model.zero_grad(set_to_none=True)
            out = model(t)
            loss = execute.torch_classification_loss(out, torch.from_numpy(labels.astype('int64')))
            loss.backward()
            opt.step()
    return _worst(set_relative_errors(execute.torch_state(nhwc), execute.torch_state(nchw)))


def jaxconv_against_torch(arch, image_size, batch_size, optimizer, steps) -> tuple[str, float]:
    from parity.compare import trajectory_diff
    from parity.pair import make_pair

    pair = make_pair(arch, 'float64', image_size=image_size, batch_size=batch_size)
    report = trajectory_diff(pair, steps=steps, optimizer=optimizer).report
    worst = max(report.figures, key=lambda f: f.error)
    return worst.name, worst.error


def _in_fresh_process(mode: str, args) -> tuple[str, float]:
    env = {**os.environ, 'JAXCONV_CONV_LOWERING': mode}
    code = (
        'import json, sys; from parity.noise_floor import jaxconv_against_torch as f; '
        'print(json.dumps(f(*json.loads(sys.argv[1]))))'
    )
    out = subprocess.run(
        [sys.executable, '-c', code, json.dumps(args)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(json.loads(out.strip().splitlines()[-1]))


def main(argv=None):
    from jaxconv.conv_lowering import LOWERINGS

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='resnet18')
    ap.add_argument('--image-size', type=int, default=33)
    ap.add_argument('--batch-sizes', default='4,8')
    ap.add_argument('--optimizer', default='adamw')
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--modes', default=','.join(('heuristic', *LOWERINGS)))
    args = ap.parse_args(argv)
    print(
        f'{args.arch} {args.image_size}x{args.image_size}, {args.steps} float64 '
        f'{args.optimizer} steps: worst relative parameter error (tensor)'
    )
    for batch in (int(b) for b in args.batch_sizes.split(',')):
        run = [args.arch, args.image_size, batch, args.optimizer, args.steps]
        name, err = torch_against_itself(*run)
        print(f'batch {batch}: torch NCHW vs torch channels_last  {err:.2e}  ({name})', flush=True)
        for mode in args.modes.split(','):
            name, err = _in_fresh_process(mode, run)
            print(f'batch {batch}: jaxconv ({mode}) vs torch  {err:.2e}  ({name})', flush=True)


if __name__ == '__main__':
    main()
