"""JSON values the trainer reads that Python's json parses but the code cannot use: TF_CONFIG
(training/cluster.py) and the provenance of a train dir's card read on resume
(training/trainer.py). JSON holds exact ints of any size (10**400 overflows a float), NaN,
Infinity, 1e400 (inf), booleans (ints to Python) and any nesting; each is one line naming the
source and the field, or, for the card's record, a warning and the fallback of a card without
one."""

import dataclasses
import types

import pytest

from model import card as card_lib
from training import cluster as cluster_lib
from training import trainer

CLUSTER = '"cluster": {"ps": ["h0:1"], "worker": ["h1:2", "h2:3"]}'


def _tf_config(text):
    return cluster_lib.cluster_from(environ={'TF_CONFIG': text})


@pytest.mark.parametrize(
    'text,message',
    [
        (
            '{"cluster": {"ps": "localhost:2222", "worker": ["h1:2"]}, "task": {"type": "ps"}}',
            'TF_CONFIG: "cluster.ps" is \'localhost:2222\', expected a list of "host:port" strings',
        ),
        (
            '{"cluster": {"ps": [2222], "worker": ["h1:2"]}, "task": {"type": "ps"}}',
            'TF_CONFIG: "cluster.ps" is [2222], expected a list of "host:port" strings',
        ),
        (
            '{"cluster": {"ps": ["h0:1"], "worker": [["a:1"]]}, "task": {"type": "ps"}}',
            'TF_CONFIG: "cluster.worker" is [[\'a:1\']], expected a list',
        ),
        (
            '{"cluster": ["ps", "worker"], "task": {"type": "ps"}}',
            'TF_CONFIG: "cluster" is [\'ps\', \'worker\'], expected an object of jobs',
        ),
        (
            '{%s, "task": {"type": ["worker"]}}' % CLUSTER,
            'TF_CONFIG: "task.type" is [\'worker\'], expected "ps" or "worker"',
        ),
        (
            '{%s, "task": {"type": "worker", "index": 1e400}}' % CLUSTER,
            'TF_CONFIG: "task.index" is inf, expected an int >= 0',
        ),
        (
            '{%s, "task": {"type": "worker", "index": 0.9}}' % CLUSTER,
            'TF_CONFIG: "task.index" is 0.9, expected an int >= 0',
        ),
        (
            '{%s, "task": {"type": "worker", "index": true}}' % CLUSTER,
            'TF_CONFIG: "task.index" is True, expected an int >= 0',
        ),
        ('[1]', 'TF_CONFIG: the value is [1], expected a JSON object'),
        ('[' * 100000 + ']' * 100000, 'TF_CONFIG is not JSON (RecursionError: '),
        (
            '{"cluster": {"ps": ["h0"], "worker": ["h1:2"]}, "task": {"type": "ps"}}',
            "TF_CONFIG: ps address 'h0' is not host:port",
        ),
    ],
)
def test_tf_config_values_are_one_line_naming_the_field(text, message):
    with pytest.raises(cluster_lib.UsageError) as error:
        _tf_config(text)
    assert str(error.value).startswith(message)
    if 'needs' not in message and 'address' not in message:
        assert str(error.value).endswith(
            'TF_CONFIG needs {"cluster": {"ps": ["host:port", ...], '
            '"worker": ["host:port", ...]}, "task": {"type": "ps" '
            'or "worker", "index": n}}.'
        )


def test_host_flags_addresses_are_host_port_too():
    with pytest.raises(cluster_lib.UsageError) as error:
        cluster_lib.cluster_from('h0:1', 'h1:99999', 'worker', 0, environ={})
    assert str(error.value) == (
        "--ps_hosts/--worker_hosts: worker address 'h1:99999' is not host:port (a port "
        'number, 0 to 65535, after the last colon).'
    )
    cluster = _tf_config(
        '{"cluster": {"ps": ["[::1]:1"], "worker": ["h1:2"]}, "task": {"type": "worker"}}'
    )
    assert (cluster.job_name, cluster.task_index, cluster.num_ps) == ('worker', 0, 1)


# The card's provenance (train_dir/model.json), as the trainer writes it and reads it on resume.


def _card(tmp_path, **provenance):
    """A card written to model.json with the first run's record (batch 8 on 48 examples) and
    `provenance`'s fields, read back as a resume reads it."""
    settings = dataclasses.asdict(trainer.TrainSettings(batch_size=8))
    record = {'settings': settings, 'dataset': {'name': 'd', 'split': 's', 'dir': str(tmp_path)}}
    record['dataset']['num_examples'] = 48
    for name, value in provenance.items():
        where, _, field = name.partition('__')
        if field:
            record[where] = dict(record[where], **{field: value})
        else:
            record[where] = value
    path = tmp_path / card_lib.CARD_FILE
    card = card_lib.from_registry('ssd_300_mobilenet', 3).replace(provenance=record)
    card_lib.write(str(path), card)
    return card_lib.load(str(path)), str(path)


@pytest.mark.parametrize(
    'provenance,field',
    [
        ({'resumed': [{'step': 10, 'changes': ['batch_size', 8, 4]}]}, 'resumed[0].changes'),
        ({'resumed': [{'step': 10, 'changes': {'batch_size': 4}}]}, 'resumed[0].changes'),
        ({'resumed': ['x', {'step': True, 'changes': {}}]}, 'resumed[1].step'),
        ({'resumed': [{'step': -1, 'changes': {}}]}, 'resumed[0].step'),
        ({'resumed': [{'step': 10, 'changes': {}, 'dataset': 'voc'}]}, 'resumed[0].dataset'),
        ({'resumed': 5}, 'resumed'),
    ],
)
def test_unreadable_resume_records_warn_and_fall_back(tmp_path, provenance, field):
    """A resume of such a card crashed in a traceback (AttributeError, TypeError): it is now a
    warning naming the card file and the field, the card is left as it was, and the epochs fall
    back to those of a card without a record."""
    card, path = _card(tmp_path, **provenance)
    assert trainer.recorded_runs(card) is None and trainer.epochs_at(card, 20) is None
    dataset = types.SimpleNamespace(
        name='d', split_name='s', dataset_dir=str(tmp_path), num_samples=48
    )
    resumed, lines = trainer._resume_record(
        card, trainer.TrainSettings(batch_size=4), dataset, 20, path
    )
    assert resumed is card
    ((level, line),) = lines
    assert level == trainer.logging.WARNING
    assert line.startswith(f'{path}: provenance.{field} is ')
    assert line.endswith(
        "the training so far cannot be read from it: this resume is not recorded in the card, "
        "and the step lines count epochs from step 0 at this run's batch size."
    )


@pytest.mark.parametrize(
    'provenance',
    [
        {'settings__batch_size': 10**400},  # OverflowError (int / int too large for a float)
        {'settings__batch_size': 0},
        {'settings__num_clones': 2.5},
        {'dataset__num_examples': -100},  # negative epochs
        {'dataset__num_examples': 0},
        {'resumed': [{'step': 10, 'changes': {}, 'dataset': {'num_examples': 1e400}}]},
    ],
)
def test_epochs_of_a_record_without_counts_are_none(tmp_path, provenance):
    card, _ = _card(tmp_path, **provenance)
    assert trainer.recorded_runs(card) is not None
    assert trainer.epochs_at(card, 20) is None


def test_epochs_of_a_readable_record(tmp_path):
    """Steps 0-10 at batch 8, then 10-20 at batch 4 (a recorded change) on 48 examples."""
    card, _ = _card(tmp_path, resumed=[{'step': 10, 'changes': {'batch_size': [8, 4]}}])
    assert trainer.epochs_at(card, 20) == pytest.approx((10 * 8 + 10 * 4) / 48)
