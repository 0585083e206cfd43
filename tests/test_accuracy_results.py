"""The measured accuracies come from the results file: train.py --help, the README table, and
benchmarks/accuracy.py's collection of real runs."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from benchmarks import accuracy
from conftest import FASHION_MNIST, needs_data
from jaxconv.registry import list_models
from jaxconv.training import TrainConfig, fit, measured, recipe_for
from jaxconv.training.cli import build_parser
from jaxconv.training.config import LEGACY_VALUES
from jaxconv.training.recipes import Recipe, augment_for, recipe_table


def measured_column(table: str) -> dict[str, str]:
    """arch -> the last cell of each row of recipe_table's plain-text table."""
    rows = [line.split() for line in table.splitlines()[1:]]
    return {row[0]: row[-1] for row in rows}


def default_row(arch: str, accuracy: float, **config_changes) -> dict:
    """A results row as a complete default run of ``arch``'s recipe would give it."""
    recipe = recipe_for(arch)
    config = {**measured.DEFAULT_RUN, **dataclasses.asdict(recipe), 'arch': arch, **config_changes}
    return {
        'arch': arch,
        'final_test_accuracy': accuracy,
        'epochs': config['epochs'],
        'config': config,
    }


def test_help_measured_column_is_what_the_results_file_holds():
    results = measured.load_results()
    column = measured_column(recipe_table(list_models()))
    for arch, cell in column.items():
        row = results.get(arch)
        wanted = {
            **dataclasses.asdict(recipe_for(arch)),
            'dataset': 'fashion_mnist',
            'seed': 0,
            'limit_train': None,
        }
        saved = {**LEGACY_VALUES, **row['config']} if row is not None else {}
        same_recipe = (
            row is not None
            and row['epochs'] == wanted['epochs']
            and all(saved[k] == v for k, v in wanted.items())
        )
        expected = f'{row["final_test_accuracy"]:.3f}' if same_recipe else '-'
        assert cell == expected, arch


def test_help_reads_the_results_file_at_run_time(tmp_path, monkeypatch):
    path = tmp_path / 'accuracy_results.json'
    path.write_text(json.dumps({'runs': {'lenet': default_row('lenet', 0.4321)}}))
    monkeypatch.setattr(measured, 'RESULTS_FILE', path)
    column = measured_column(build_parser().epilog.split('\n\n')[0].split('\n', 1)[1])
    assert column['lenet'] == '0.432'
    assert column['vgg11'] == '-'


@pytest.mark.parametrize(
    'change',
    [
        {'lr': 0.5},
        {'epochs': 1},
        {'limit_train': 1000},
        {'dataset': 'mnist'},
        {'augment': 'flip'},
        {'label_smoothing': 0.1},
        {'seed': 1},
    ],
)
def test_a_run_of_another_recipe_does_not_measure_the_default(change):
    row = default_row('lenet', 0.9, **change)
    if 'epochs' in change:
        row['epochs'] = change['epochs']
    results = {'lenet': row}
    assert measured_column(recipe_table(['lenet'], results))['lenet'] == '-'
    assert (
        measured_column(recipe_table(['lenet'], {'lenet': default_row('lenet', 0.9)}))['lenet']
        == '0.900'
    )


def test_a_row_saved_before_label_smoothing_existed_measures_a_recipe_without_it():
    row = default_row('lenet', 0.9)
    del row['config']['label_smoothing']
    assert measured.measures_recipe(row, recipe_for('lenet'))
    smoothed = dataclasses.replace(recipe_for('lenet'), label_smoothing=0.1)
    assert not measured.measures_recipe(row, smoothed)


def test_readme_table_is_generated_from_the_results_file():
    readme = accuracy.README.read_text()
    begin = readme.index(accuracy.TABLE_BEGIN) + len(accuracy.TABLE_BEGIN)
    end = readme.index(accuracy.TABLE_END)
    assert readme[begin:end].strip() == accuracy.render_table(measured.load_results()).strip()


def test_every_row_names_its_command_and_cpu_and_beats_nothing_by_typing():
    for arch, row in measured.load_results().items():
        assert row['command'].startswith(f'python train.py --arch {arch} '), arch
        assert row['cpu_models'] and row['wall_seconds'] > 0 and row['images_per_sec'] > 0
        assert len(row['test_accuracy']) == row['epochs']
        assert row['test_accuracy'][-1] == row['final_test_accuracy']


@needs_data
def test_collect_reads_a_real_run(tmp_path, tfds_dir):
    root = tmp_path / 'runs'
    config = TrainConfig(
        arch='lenet',
        data_dir=str(FASHION_MNIST),
        tfds_dir=str(tfds_dir),
        workdir=str(root / 'lenet'),
        limit_train=256,
        limit_eval=128,
        batch_size=64,
        epochs=2,
        progress=False,
    )
    result = fit(config)
    (root / 'lenet' / 'hosts.jsonl').write_text(
        json.dumps({'cpu_model': 'test cpu', 'command': accuracy.train_command('lenet', [])}) + '\n'
    )
    results = accuracy.collect(root, tmp_path / 'results.json')
    row = results['lenet']
    assert row['final_test_accuracy'] == result.records[-1]['test_accuracy']
    assert row['test_accuracy'] == [r['test_accuracy'] for r in result.records]
    assert row['epochs'] == 2 and row['cpu_models'] == ['test cpu']
    assert row['config']['limit_train'] == 256
    # a limited run is not the default recipe: it must not show as measured
    assert measured_column(recipe_table(['lenet'], results))['lenet'] == '-'
    table = accuracy.render_table(results)
    assert re.search(r'\| lenet \| `python train.py --arch lenet --data-dir DIR` \| 2 \|', table)


def test_the_recipe_augmentation_applies_to_fashion_mnist_only():
    recipe = Recipe(32, 128, 'adam', 1e-3, 2, augment='crop-flip')
    assert augment_for('fashion_mnist', recipe) == 'crop-flip'
    assert augment_for('mnist', recipe) == 'none'  # a mirrored digit is another digit
    assert augment_for('folder', recipe) == 'none'
    assert augment_for('cifar10', Recipe(32, 128, 'adam', 1e-3, 2)) == 'crop-flip'
