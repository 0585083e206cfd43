"""Fault injection for tests/test_faults.py: Python imports ``sitecustomize`` at start-up, so a
train.py subprocess with this directory on its ``PYTHONPATH`` runs unmodified but with the hooks
below (the ``fault_env`` fixture sets both).

JAXCONV_FAULT_KILL_AT_STEP=k    SIGKILL this process just before global train step k runs.
JAXCONV_FAULT_NAN_AT_STEP=k     report the loss of global train step k as NaN.
JAXCONV_FAULT_KILL_AT_COMMIT=s  SIGKILL this process when orbax is about to rename the complete
                                temporary directory of checkpoint s (commit marker included) into
                                place: the last moment of writing a checkpoint.
"""

import os
import signal


def _step(name):
    value = os.environ.get(name)
    return None if value is None else int(value)


KILL_AT_STEP = _step('JAXCONV_FAULT_KILL_AT_STEP')
NAN_AT_STEP = _step('JAXCONV_FAULT_NAN_AT_STEP')
KILL_AT_COMMIT = _step('JAXCONV_FAULT_KILL_AT_COMMIT')

if KILL_AT_STEP is not None or NAN_AT_STEP is not None:
    from jaxconv.training import steps

    _make_train_step = steps.make_train_step

    def make_train_step(*args, **kwargs):
        step_fn = _make_train_step(*args, **kwargs)

        def step(state, rngs, x, y):
            k = int(state['step'])
            if k == KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)
            state, metrics = step_fn(state, rngs, x, y)
            if k == NAN_AT_STEP:
                metrics = {**metrics, 'loss': metrics['loss'] * float('nan')}
            return state, metrics

        return step

    steps.make_train_step = make_train_step

if KILL_AT_COMMIT is not None:
    # Patches orbax's PRIVATE ``orbax.checkpoint._src.path.async_path.rename``: orbax has no hook
    # for the commit of a checkpoint, and this rename is it (``AtomicRenameTemporaryPath.finalize``
    # in ``_src/path/atomicity.py`` writes commit_success.txt, then renames N.orbax-checkpoint-tmp
    # to N). A newer orbax may move it: test_sigkill_at_the_commit_of_a_checkpoint then fails
    # with the process not killed, which says where to look.
    from orbax.checkpoint._src.path import async_path

    _rename = async_path.rename

    async def rename(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == str(KILL_AT_COMMIT):
            os.kill(os.getpid(), signal.SIGKILL)
        return await _rename(src, dst, *args, **kwargs)

    async_path.rename = rename
