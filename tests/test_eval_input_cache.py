"""The eval watcher's input cache (evaluation/input_cache.py): evaluations that feed cached
batches give the results of a fresh evaluation, file for file; the records a cache holds are not
decoded again; a cache is filled only by an evaluation that read the split whole, and dropped
when the records change."""

import os

import numpy as np
import pytest

from evaluation import evaluate
from evaluation import input as eval_input
from evaluation import input_cache
from tests import inference_fixtures

NUM_TEST = 6  # images of the test split (a quarter of those generated)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cache_data'))
    spec = inference_fixtures.small_spec()  # spread-out scores: few ties between detections
    prefix = inference_fixtures.write_checkpoint(spec, os.path.join(root, 'train'), seed=2)
    records_dir = inference_fixtures.write_synthetic_split(root, 4 * NUM_TEST, seed=5)
    return {'root': root, 'records_dir': records_dir, 'card': spec, 'prefix': prefix}


def _settings(data, **overrides):
    return evaluate.EvalSettings(
        card=data['card'],
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=data['records_dir'],
        batch_size=2,
        metrics=('voc07', 'voc12', 'coco'),
        pr_curves=False,
        **overrides,
    )


def _files(results_dir):
    """{name: bytes} of the devkit results files, the COCO detections and the tables."""
    return {
        name: open(os.path.join(results_dir, name), 'rb').read()
        for name in sorted(os.listdir(results_dir))
        if name.startswith('comp4_') or name in ('results.txt', 'coco_detections.json')
    }


@pytest.fixture(scope='module')
def fresh(data):
    """Results of evaluations without a cache: the whole split, and its first two batches."""
    out = {}
    for name, limit in (('all', None), ('two_batches', 2)):
        results_dir = os.path.join(data['root'], f'fresh_{name}')
        result = evaluate.evaluate_checkpoint(
            _settings(data, max_num_batches=limit), data['prefix'], results_dir, log=_quiet
        )
        out[name] = (result, _files(results_dir))
    # Detections of distinct scores: the files compared below say which images came when.
    lines = b''.join(v for k, v in out['all'][1].items() if k.startswith('comp4_')).splitlines()
    assert len(lines) >= 20 and len({line.split()[1] for line in lines}) >= 20
    return out


def _quiet(_):
    pass


@pytest.fixture
def pipeline_batches(monkeypatch):
    """Counts the batches each evaluation reads from the records (the input iterator)."""
    counts = []
    session_batches = eval_input.session_batches

    def counted(sess, fetches, feed_dict=None):
        counts.append(0)
        for out in session_batches(sess, fetches, feed_dict):
            counts[-1] += 1
            yield out

    monkeypatch.setattr(input_cache.eval_input, 'session_batches', counted)
    return counts


def _evaluate(evaluator, data, name, lines=None):
    results_dir = os.path.join(data['root'], name)
    log = _quiet if lines is None else lines.append
    return evaluator.evaluate(data['prefix'], results_dir, log=log), _files(results_dir)


def _same(got, want):
    (result, files), (want_result, want_files) = got, want
    assert result.num_images == want_result.num_images
    assert (result.metrics, result.class_ap) == (want_result.metrics, want_result.class_ap)
    assert files == want_files


@pytest.mark.parametrize(
    'budget_batches, cached_images, read_later',
    [(3, NUM_TEST, 0), (1, 2, 2), (0, 0, 3)],
    ids=['whole split', 'first batch', 'nothing fits'],
)
def test_cached_evaluations_equal_fresh_ones(
    data, fresh, pipeline_batches, budget_batches, cached_images, read_later
):
    """Budgets holding the whole split, its first batch only (the rest is read from the records
    after it, which must be skipped undecoded: read twice, an image is refused as added twice)
    and less than a batch: every evaluation gives the fresh evaluation's results and files."""
    settings = _settings(data)
    batch_bytes = 2 * 300 * 300 * 3 * 4
    # A budget a little over whole batches of network input (the ground truth is small).
    budget_mb = (budget_batches * batch_bytes + batch_bytes // 2) / 2**20
    lines = []
    with evaluate.CheckpointEvaluator(settings, input_cache_mb=budget_mb) as evaluator:
        _same(_evaluate(evaluator, data, 'first', lines), fresh['all'])
        cache = evaluator._input_cache
        assert (cache.filled, cache.num_images, cache.complete) == (
            True,
            cached_images,
            budget_batches == 3,
        )
        for again in ('second', 'third'):
            _same(_evaluate(evaluator, data, again, lines), fresh['all'])
    assert pipeline_batches == [3] + ([read_later] * 2 if read_later else [])
    filled = [line for line in lines if 'input cache' in line]
    assert len(filled) == 1 and f'{cached_images} of {NUM_TEST} images' in filled[0]
    if budget_batches < 3:
        assert 'would hold them all (--input_cache_mb)' in filled[0]


def test_cached_batches_are_the_pipeline_batches(data):
    """What a cache holds is what the input pipeline gives, array for array (an independent
    read of the same split through make_eval_dataset)."""
    import tensorflow as tf

    settings = _settings(data)
    with evaluate.CheckpointEvaluator(settings, input_cache_mb=64) as evaluator:
        evaluator.evaluate(data['prefix'], os.path.join(data['root'], 'arrays'), log=_quiet)
        cached = evaluator._input_cache._batches
    dataset, _ = evaluate.open_dataset(settings, settings.card)
    with tf.Graph().as_default():
        batches = eval_input.make_eval_dataset(
            dataset, settings.card.preprocessing(), settings.card.input_shape, 2
        )
        batch = tf.compat.v1.data.make_one_shot_iterator(batches).get_next()
        with tf.compat.v1.Session() as sess:
            read = list(eval_input.session_batches(sess, batch))
    assert len(cached) == len(read) == 3
    for got, want in zip(cached, read):
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            assert not got[key].flags.writeable


def test_max_num_batches_counts_the_cached_batches(data, fresh, pipeline_batches):
    """With --max_num_batches=2 and one cached batch, later evaluations read one batch from the
    records: the second, as a fresh evaluation of two batches does."""
    settings = _settings(data, max_num_batches=2)
    budget_mb = 1.5 * 2 * 300 * 300 * 3 * 4 / 2**20
    with evaluate.CheckpointEvaluator(settings, input_cache_mb=budget_mb) as evaluator:
        for name in ('limited_first', 'limited_second'):
            _same(_evaluate(evaluator, data, name), fresh['two_batches'])
        assert evaluator.input_cache_images == 2
    assert pipeline_batches == [2, 1]


def test_only_a_whole_read_fills_the_cache(data, fresh, pipeline_batches, monkeypatch):
    """An evaluation that stops part-way leaves the cache empty (its batches are not kept: the
    cache is a prefix of a split read to its end); the next evaluation fills it."""
    add_batch = evaluate._Metrics.add_batch

    def fail_at_the_second_batch(metrics, out):
        if metrics.done:
            raise RuntimeError('metrics failed')
        add_batch(metrics, out)

    with evaluate.CheckpointEvaluator(_settings(data), input_cache_mb=64) as evaluator:
        with monkeypatch.context() as patch:
            patch.setattr(evaluate._Metrics, 'add_batch', fail_at_the_second_batch)
            with pytest.raises(RuntimeError, match='metrics failed'):
                _evaluate(evaluator, data, 'failed')
        assert not evaluator._input_cache.filled and evaluator.input_cache_images == 0
        _same(_evaluate(evaluator, data, 'after_failure'), fresh['all'])
        assert evaluator.input_cache_images == NUM_TEST
        _same(_evaluate(evaluator, data, 'after_failure_cached'), fresh['all'])
    # The failed evaluation read some batches, the next one all three, the last one none.
    assert len(pipeline_batches) == 2 and pipeline_batches[-1] == 3


def test_changed_records_empty_the_cache(data, fresh, pipeline_batches):
    """A record file rewritten between evaluations (here: its time) drops the cache with a log
    line; that evaluation decodes the split again and fills the cache anew."""
    lines = []
    with evaluate.CheckpointEvaluator(_settings(data), input_cache_mb=64) as evaluator:
        _evaluate(evaluator, data, 'before_change')
        record = evaluator._dataset.files[0]
        stat = os.stat(record)
        os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        _same(_evaluate(evaluator, data, 'after_change', lines), fresh['all'])
        _same(_evaluate(evaluator, data, 'after_change_cached'), fresh['all'])
    assert pipeline_batches == [3, 3]
    assert lines[0] == (
        f'[eval] the records changed since the input cache was filled: its {NUM_TEST} images '
        f'are dropped and the split is decoded again.'
    )
