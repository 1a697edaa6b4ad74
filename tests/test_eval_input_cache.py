"""The eval watcher's input cache (evaluation/input_cache.py): evaluations that feed cached
batches give the results of a fresh evaluation, file for file; the records a cache holds are not
decoded again; a cache is filled only by an evaluation that succeeded, and dropped when the
records change."""

import glob
import json
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from evaluation import evaluate
from evaluation import input as eval_input
from evaluation import input_cache
from evaluation import watcher
from tests import inference_fixtures
from tests.conftest import require_nchw

NUM_TEST = 7  # images of the test split (a quarter of those generated)
BATCH = 3  # batches of 3, 3 and 1 images


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cache_data'))
    spec = inference_fixtures.small_spec()  # spread-out scores: few ties between detections
    # The seed other modules use: one checkpoint built for the test run (shared_cache).
    prefix = inference_fixtures.write_checkpoint(spec, os.path.join(root, 'train'))
    records_dir = inference_fixtures.write_synthetic_split(root, 4 * NUM_TEST, seed=5)
    return {'root': root, 'records_dir': records_dir, 'card': spec, 'prefix': prefix}


def _settings(data, **overrides):
    return evaluate.EvalSettings(
        card=data['card'],
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=data['records_dir'],
        batch_size=BATCH,
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


def _quiet(_):
    pass


@pytest.fixture(scope='module')
def shared(data):
    """({--max_num_batches: CheckpointEvaluator} for None (the whole split), 2 and 5, fresh):
    each evaluator's graph and session are built once for the module (seconds, where an
    evaluation takes a fraction of one); `evaluator_of` gives each test one with an empty
    cache. `fresh`: the results of evaluations without a cache (a new evaluator's first, as
    `evaluate_checkpoint` runs it), of the whole split and of its first two batches, made
    before any cache is used."""
    evaluators = {
        limit: evaluate.CheckpointEvaluator(_settings(data, max_num_batches=limit))
        for limit in (None, 2, 5)
    }
    fresh = {}
    for name, limit in (('all', None), ('two_batches', 2)):
        results_dir = os.path.join(data['root'], f'fresh_{name}')
        result = evaluators[limit].evaluate(data['prefix'], results_dir, log=_quiet)
        _park(evaluators[limit])
        fresh[name] = (result, _files(results_dir))
    # Detections of distinct scores: the files compared below say which images came when.
    lines = b''.join(v for k, v in fresh['all'][1].items() if k.startswith('comp4_')).splitlines()
    assert len(lines) >= 20 and len({line.split()[1] for line in lines}) >= 20
    yield evaluators, fresh
    for evaluator in evaluators.values():
        evaluator.close()


@pytest.fixture
def fresh(shared):
    return shared[1]


@pytest.fixture
def evaluator_of(shared):
    """evaluator_of(budget_mb, max_num_batches=None): the module's evaluator of that limit,
    with an empty input cache of `budget_mb` (its graph and session kept for the next test)."""
    used = []

    def get(budget_mb, max_num_batches=None):
        used.append(_empty_cache(shared[0][max_num_batches], budget_mb))
        return used[-1]

    yield get
    for evaluator in used:
        _park(evaluator)


def _empty_cache(evaluator, budget_mb):
    """`evaluator` (built or not) with the empty input cache that a new
    `CheckpointEvaluator(settings, input_cache_mb=budget_mb)` starts with."""
    new = evaluate.CheckpointEvaluator(evaluator.settings, input_cache_mb=budget_mb)
    evaluator._input_cache_bytes = budget = new._input_cache_bytes
    if evaluator._input_cache is not None:  # built: the cache names the split's record files
        evaluator._input_cache = input_cache.InputCache(budget, evaluator._input_cache._files)
    return evaluator


def _park(evaluator):
    """Gives `evaluator`'s session a new input iterator that has not run, at the end of its
    use. Replacing (or closing) an iterator that ran and then idled a few seconds took 2-10 s
    (the next test's first evaluation stalled in MakeIterator, tf.data's background threads it
    seems); replaced at once, or one that never ran, it costs nothing."""
    if evaluator._session is not None:
        evaluator._session.run(evaluator._start, {evaluator._skip: 0})


@pytest.fixture
def records_read(monkeypatch):
    """reads() -> batches read from the records (the input iterator) since the last call."""
    count = [0, 0]  # total, at the last call
    session_batches = eval_input.session_batches

    def counted(sess, fetches, feed_dict=None):
        for out in session_batches(sess, fetches, feed_dict):
            count[0] += 1
            yield out

    def reads():
        new, count[1] = count[0] - count[1], count[0]
        return new

    monkeypatch.setattr(input_cache.eval_input, 'session_batches', counted)
    return reads


def _evaluate(evaluator, data, name, lines=None):
    results_dir = os.path.join(data['root'], name)
    log = _quiet if lines is None else lines.append
    return evaluator.evaluate(data['prefix'], results_dir, log=log), _files(results_dir)


def _same(got, want):
    (result, files), (want_result, want_files) = got, want
    assert result.num_images == want_result.num_images
    assert (result.metrics, result.class_ap) == (want_result.metrics, want_result.class_ap)
    assert files == want_files


def _budget_mb(batches):
    """A budget a little over `batches` full batches of network input (the ground truth is
    small)."""
    return (batches + 0.5) * BATCH * 300 * 300 * 3 * 4 / 2**20


@pytest.mark.parametrize(
    'budget_batches, cached_images, read_later',
    [(3, NUM_TEST, 0), (1, BATCH, 2), (0, 0, 3)],
    ids=['whole split', 'first batch', 'nothing fits'],
)
def test_cached_evaluations_equal_fresh_ones(
    evaluator_of, data, fresh, records_read, budget_batches, cached_images, read_later
):
    """Budgets holding the whole split (its last batch partial), its first batch only (the rest
    is read from the records after it, which must be skipped undecoded: read twice, an image is
    refused as added twice) and less than a batch: every evaluation gives the fresh
    evaluation's results and files, and results.json says how many images came from memory."""
    lines = []
    evaluator = evaluator_of(_budget_mb(budget_batches))
    first = _evaluate(evaluator, data, 'first', lines)
    _same(first, fresh['all'])
    assert first[0].summary['input_cached_images'] == 0 and records_read() == 3
    assert evaluator.input_cache_images == cached_images
    for again in ('second', 'third'):
        later = _evaluate(evaluator, data, again, lines)
        _same(later, fresh['all'])
        assert later[0].summary['input_cached_images'] == cached_images
        assert records_read() == read_later
    said = [line for line in lines if 'input cache' in line]
    if budget_batches == 3:
        assert said == [
            f'[eval] input cache: the next evaluations reuse the decoded input of {NUM_TEST} '
            f'of {NUM_TEST} images (7 MiB).'
        ]
    elif budget_batches == 1:
        assert said == [
            f'[eval] input cache: the next evaluations reuse the decoded input of {BATCH} of '
            f'{NUM_TEST} images (3 MiB); about 7 MiB would hold them all '
            f'(--input_cache_mb={_budget_mb(1):g} now).'
        ]
    else:
        assert said == [
            f'[eval] input cache: one batch of network input takes 3 MiB, more than '
            f'--input_cache_mb={_budget_mb(0):g}; nothing is cached.'
        ]


def test_cached_batches_are_the_pipeline_batches(evaluator_of, data):
    """What a cache holds is what the input pipeline gives, array for array (an independent
    read of the same split through make_eval_dataset)."""
    settings = _settings(data)
    evaluator = evaluator_of(64)
    evaluator.evaluate(data['prefix'], os.path.join(data['root'], 'arrays'), log=_quiet)
    cached = evaluator._input_cache._batches
    dataset, _ = evaluate.open_dataset(settings, settings.card)
    with tf.Graph().as_default():
        batches = eval_input.make_eval_dataset(
            dataset, settings.card.preprocessing(), settings.card.input_shape, BATCH
        )
        batch = tf.compat.v1.data.make_one_shot_iterator(batches).get_next()
        with tf.compat.v1.Session() as sess:
            read = list(eval_input.session_batches(sess, batch))
    assert [len(b['num_gt']) for b in cached] == [len(b['num_gt']) for b in read] == [3, 3, 1]
    for got, want in zip(cached, read):
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            assert not got[key].flags.writeable


@pytest.mark.parametrize(
    'max_num_batches, budget_batches, read_later',
    [(2, 1, 1), (5, 3, 0), (5, 1, 2)],
    ids=['two of three batches', 'more than the split, all cached', 'more than the split'],
)
def test_max_num_batches_counts_the_cached_batches(
    evaluator_of, data, fresh, records_read, max_num_batches, budget_batches, read_later
):
    """--max_num_batches counts the cached batches: with two and one cached, later evaluations
    read one batch from the records, the second, as a fresh evaluation of two batches does; a
    limit beyond the split changes nothing."""
    want = fresh['two_batches' if max_num_batches == 2 else 'all']
    evaluator = evaluator_of(_budget_mb(budget_batches), max_num_batches)
    _same(_evaluate(evaluator, data, 'limited_first'), want)
    assert records_read() == min(max_num_batches, 3)
    _same(_evaluate(evaluator, data, 'limited_second'), want)
    assert records_read() == read_later


def test_make_eval_dataset_skip_with_max_num_batches(data):
    """The pipeline alone: skipping 4 records (not a whole number of batches) with a limit of
    two batches of 3 gives records 5 and 6, in one batch; skipping beyond the limit, none."""
    settings = _settings(data)
    dataset, _ = evaluate.open_dataset(settings, settings.card)

    def names(skip, max_num_batches):
        with tf.Graph().as_default():
            batches = eval_input.make_eval_dataset(
                dataset,
                settings.card.preprocessing(),
                settings.card.input_shape,
                BATCH,
                max_num_batches=max_num_batches,
                skip=tf.constant(skip, tf.int64),
            )
            batch = tf.compat.v1.data.make_one_shot_iterator(batches).get_next()
            with tf.compat.v1.Session() as sess:
                return [b['filename'].tolist() for b in eval_input.session_batches(sess, batch)]

    split = sum(names(0, None), [])
    assert len(split) == NUM_TEST
    assert names(4, 2) == [split[4:6]]
    assert names(6, 2) == []
    assert names(4, None) == [split[4:7]]


def test_eval_inputs_run_without_autotuning(data):
    """tf.data's autotuning thread sleeps up to a minute between its rounds, and re-initialising
    an iterator waits for the old one's thread to wake: the watcher's evaluation of a new
    checkpoint, in the session of the last one, started up to a minute late (41.9 s after a
    100 s wait; too slow to reproduce in a test). Both evaluation inputs turn it off, with and
    without a private thread pool."""
    settings = _settings(data)
    dataset, _ = evaluate.open_dataset(settings, settings.card)
    with tf.Graph().as_default():
        for num_threads in (None, 2):
            inputs = (
                eval_input.make_eval_dataset(
                    dataset,
                    settings.card.preprocessing(),
                    settings.card.input_shape,
                    BATCH,
                    num_threads=num_threads,
                ),
                eval_input.make_raw_eval_dataset(dataset, BATCH, num_threads=num_threads),
            )
            for batches in inputs:
                assert batches.options().autotune.enabled is False
                assert batches.options().threading.private_threadpool_size == num_threads


@pytest.mark.parametrize('where', ['at the second batch', 'after the last batch'])
def test_only_a_successful_evaluation_fills_the_cache(
    evaluator_of, data, fresh, records_read, monkeypatch, where
):
    """An evaluation that fails, part-way or after reading the whole split (the results files'
    close), leaves the cache empty however far the input thread had read; the next evaluation
    fills it."""
    add_batch, close = evaluate._Metrics.add_batch, evaluate._Metrics.close

    def fail_at_the_second_batch(metrics, out):
        if metrics.done:
            raise RuntimeError('metrics failed')
        add_batch(metrics, out)

    def fail_at_close(metrics):
        close(metrics)
        raise RuntimeError('metrics failed')

    evaluator = evaluator_of(64)
    with monkeypatch.context() as patch:
        if where == 'at the second batch':
            patch.setattr(evaluate._Metrics, 'add_batch', fail_at_the_second_batch)
        else:
            patch.setattr(evaluate._Metrics, 'close', fail_at_close)
        with pytest.raises(RuntimeError, match='metrics failed'):
            _evaluate(evaluator, data, 'failed')
    assert not evaluator._input_cache.filled and evaluator.input_cache_images == 0
    records_read()
    lines = []
    _same(_evaluate(evaluator, data, 'after_failure', lines), fresh['all'])
    assert records_read() == 3 and evaluator.input_cache_images == NUM_TEST
    assert [line for line in lines if 'input cache' in line]
    _same(_evaluate(evaluator, data, 'after_failure_cached'), fresh['all'])
    assert records_read() == 0


@pytest.mark.parametrize('change', ['touched', 'replaced by a copy keeping its times'])
def test_changed_records_empty_the_cache(evaluator_of, data, fresh, records_read, change, tmp_path):
    """A record file rewritten between evaluations (its time changed, or replaced by a copy
    with the same size and times) drops the cache with a log line; that evaluation decodes the
    split again and fills the cache anew, saying so."""
    lines = []
    evaluator = evaluator_of(64)
    _evaluate(evaluator, data, 'before_change')
    record = evaluator._dataset.files[0]
    if change == 'touched':
        stat = os.stat(record)
        os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    else:
        copy = str(tmp_path / 'copy')
        shutil.copy2(record, copy)
        os.replace(copy, record)
    records_read()
    _same(_evaluate(evaluator, data, 'after_change', lines), fresh['all'])
    assert records_read() == 3
    _same(_evaluate(evaluator, data, 'after_change_cached'), fresh['all'])
    assert records_read() == 0
    assert lines[0] == (
        f'[eval] the records changed since the input cache was filled: its {NUM_TEST} images '
        f'are dropped and the split is decoded again.'
    )
    assert lines[-1].startswith('[eval] input cache: the next evaluations reuse')


def test_nchw_cached_evaluations_equal_fresh_ones(data, tmp_path):
    """The NCHW graph (its network input [B, 3, H, W]) fed from the cache."""
    require_nchw()
    with evaluate.CheckpointEvaluator(_settings(data, data_format='NCHW')) as evaluator:
        # Its first evaluation, without a cache, is evaluate_checkpoint's.
        want = evaluator.evaluate(data['prefix'], str(tmp_path / 'f'), log=_quiet)
        _empty_cache(evaluator, 64)  # the same graph and session
        for name in ('first', 'cached'):
            got = evaluator.evaluate(data['prefix'], str(tmp_path / name), log=_quiet)
            assert (got.metrics, got.class_ap) == (want.metrics, want.class_ap)
            assert _files(str(tmp_path / name)) == _files(str(tmp_path / 'f'))
        assert evaluator.input_cache_images == NUM_TEST


def test_an_empty_split_fills_an_empty_complete_cache(tmp_path):
    """A split of no batches: the cache is complete (later evaluations read no record) and says
    nothing (there is no batch size to report)."""

    class EmptySession:
        def run(self, fetches, feed_dict=None):
            raise tf.errors.OutOfRangeError(None, None, 'end of the split')

    record = tmp_path / 'test_000.tfrecord'
    record.write_bytes(b'')
    cache = input_cache.InputCache(2**20, [str(record)])
    inputs = {key: key for key in eval_input.GROUND_TRUTH_KEYS + ('image', 'bbox_img')}
    assert list(cache.fetch_batches(EmptySession(), inputs, {'scores': 'scores'})) == []
    assert cache.commit(0) is None
    assert (cache.filled, cache.complete, cache.num_images) == (True, True, 0)


def test_the_budget_holds_batches_up_to_its_last_byte(tmp_path):
    """Three batches of 2 images, a budget of exactly two of them (their string arrays counted
    with their strings): a fill keeps those two and stops at the third."""
    keys = eval_input.GROUND_TRUTH_KEYS + ('image', 'bbox_img')

    def batch():
        arrays = {key: np.zeros(2, np.float32) for key in keys}
        arrays['filename'] = np.array([b'a.jpg', b'bb.jpg'], object)
        return arrays

    class ListSession:
        def __init__(self, batches):
            self._batches = iter(batches)

        def run(self, fetches, feed_dict=None):
            arrays = next(self._batches, None)
            if arrays is None:
                raise tf.errors.OutOfRangeError(None, None, 'end of the split')
            return {name: arrays[tensor] for name, tensor in fetches.items()}

    one = batch()
    batch_bytes = 8 * (len(keys) - 1) + one['filename'].nbytes + len(b'a.jpg') + len(b'bb.jpg')
    assert input_cache._nbytes(one) == batch_bytes
    record = tmp_path / 'test_000.tfrecord'
    record.write_bytes(b'')
    cache = input_cache.InputCache(2 * batch_bytes, [str(record)])
    cache.fill(ListSession([batch() for _ in range(3)]), {key: key for key in keys}, 6)
    assert (cache.num_images, cache.nbytes, cache.complete) == (4, 2 * batch_bytes, False)


def test_records_rewritten_in_place_keeping_size_and_times_change_the_fingerprint(tmp_path):
    """`cp -p` over a record: the same file (inode), size and modification time; only the
    change time tells."""
    record, other = tmp_path / 'test_000.tfrecord', tmp_path / 'other'
    record.write_bytes(b'records 1')
    other.write_bytes(b'records 2')
    stat = os.stat(record)
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = input_cache._fingerprint([str(record)])
    time.sleep(0.05)  # the kernel's file clock ticks every few milliseconds
    shutil.copy2(other, record)
    after = input_cache._fingerprint([str(record)])
    assert before[0][:4] == after[0][:4] and before != after
    assert input_cache._fingerprint([str(tmp_path / 'missing')]) is None


@pytest.mark.parametrize(
    'budget_batches, max_num_batches, fill_reads, cached_images, read_later',
    [(3, None, 3, NUM_TEST, 0), (1, None, 2, BATCH, 2), (0, None, 1, 0, 3), (3, 2, 2, 6, 0)],
    ids=['whole split', 'first batch', 'nothing fits', 'two batches of a limit'],
)
def test_fill_before_any_evaluation(
    evaluator_of,
    data,
    fresh,
    records_read,
    budget_batches,
    max_num_batches,
    fill_reads,
    cached_images,
    read_later,
):
    """`fill_input_cache` reads the records alone, no further than the budget (one batch past
    it), and every evaluation after it is fed from memory with the fresh evaluation's results
    and files; a second fill reads nothing."""
    want = fresh['two_batches' if max_num_batches == 2 else 'all']
    lines = []
    evaluator = evaluator_of(_budget_mb(budget_batches), max_num_batches)
    assert evaluator.fill_input_cache(lines.append) == cached_images
    assert records_read() == fill_reads
    assert evaluator.fill_input_cache(lines.append) == cached_images and records_read() == 0
    for name in ('filled_first', 'filled_second'):
        got = _evaluate(evaluator, data, name, lines)
        _same(got, want)
        assert got[0].summary['input_cached_images'] == cached_images
        assert records_read() == read_later
    total = want[0].num_images
    said = [line for line in lines if 'input cache' in line]
    assert said.pop(0) == (
        f"[eval] input cache: decoding the split's first images, up to "
        f'{_budget_mb(budget_batches):g} MiB of network input, for the evaluations.'
    )
    if budget_batches == 0:
        assert said == [
            f'[eval] input cache: one batch of network input takes 3 MiB, more than '
            f'--input_cache_mb={_budget_mb(0):g}; nothing is cached.'
        ]
    else:
        assert len(said) == 1 and said[0].startswith(
            f'[eval] input cache: the next evaluations reuse the decoded input of '
            f'{cached_images} of {total} images'
        )


def test_records_changed_after_a_fill_are_decoded_again_by_the_next_fill(
    evaluator_of, data, fresh, records_read, tmp_path
):
    """A fill notices records changed since the last one, drops it and fills anew, so the
    watcher's evaluations after an idle spell still come from memory."""
    lines = []
    evaluator = evaluator_of(64)
    evaluator.fill_input_cache(lines.append)
    records_read()
    record = evaluator._dataset.files[0]
    stat = os.stat(record)
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert evaluator.fill_input_cache(lines.append) == NUM_TEST and records_read() == 3
    got = _evaluate(evaluator, data, 'after_refill')
    _same(got, fresh['all'])
    assert got[0].summary['input_cached_images'] == NUM_TEST and records_read() == 0
    assert (
        f'[eval] the records changed since the input cache was filled: its {NUM_TEST} images '
        f'are dropped and the split is decoded again.'
    ) in lines


def test_fill_that_fails_leaves_the_cache_empty(
    evaluator_of, data, fresh, records_read, monkeypatch
):
    """A fill stopped by an error keeps nothing; the first evaluation decodes and fills."""
    session_batches = input_cache.eval_input.session_batches

    def fail_at_the_second_batch(sess, fetches, feed_dict=None):
        for i, out in enumerate(session_batches(sess, fetches, feed_dict)):
            if i == 1:
                raise tf.errors.DataLossError(None, None, 'corrupted record')
            yield out

    evaluator = evaluator_of(64)
    with monkeypatch.context() as patch:
        patch.setattr(input_cache.eval_input, 'session_batches', fail_at_the_second_batch)
        with pytest.raises(tf.errors.DataLossError):
            evaluator.fill_input_cache(_quiet)
    assert not evaluator._input_cache.filled and evaluator.input_cache_images == 0
    records_read()
    got = _evaluate(evaluator, data, 'after_failed_fill')
    _same(got, fresh['all'])
    assert got[0].summary['input_cached_images'] == 0 and records_read() == 3
    assert evaluator.input_cache_images == NUM_TEST


def _watch_a_checkpoint_arrive(data, tmp_path, at_first_sleep=lambda: None, there=False):
    """A watch (64 MiB of input cache) of an empty training folder, where the fixture's
    checkpoint appears as model.ckpt-5 at the watcher's first sleep, after `at_first_sleep()`
    (`there`: before the watch starts); it stops 10 s (of a fake clock) after that. Returns
    (ledger entries, log lines, eval_dir)."""
    train_dir, eval_dir = tmp_path / 'train', str(tmp_path / 'eval')
    train_dir.mkdir()
    clock = {'now': 0.0}

    def arrive():
        for path in glob.glob(data['prefix'] + '.*'):
            shutil.copy(path, train_dir / f'model.ckpt-5{path[len(data["prefix"]) :]}')

    def sleep(seconds):
        clock['now'] += seconds
        if not any(train_dir.iterdir()):
            at_first_sleep()
            arrive()

    if there:
        arrive()

    lines = []
    entries = watcher.watch(
        _settings(data),
        str(train_dir),
        eval_dir,
        interval_secs=5.0,
        timeout_secs=10.0,
        log=lines.append,
        clock=lambda: clock['now'],
        sleep=sleep,
        input_cache_mb=64,
    )
    return entries, lines, eval_dir


def test_watcher_fills_the_cache_while_it_waits(data, fresh, records_read, tmp_path):
    """A watcher started before the first checkpoint decodes the split while it waits: that
    checkpoint's evaluation reads no record and gives the fresh evaluation's detections."""
    reads_before_checkpoint = []
    entries, lines, eval_dir = _watch_a_checkpoint_arrive(
        data, tmp_path, lambda: reads_before_checkpoint.append(records_read())
    )
    assert [e['status'] for e in entries] == ['evaluated']
    assert reads_before_checkpoint == [3] and records_read() == 0
    filled = [i for i, line in enumerate(lines) if 'input cache: the next evaluations' in line]
    evaluated = [i for i, line in enumerate(lines) if line.startswith('[watch] model.ckpt-5')]
    assert len(filled) == 1 and filled[0] < evaluated[0]
    assert "[eval] input cache: decoding the split's first images" in lines[filled[0] - 1]
    results_dir = os.path.join(eval_dir, entries[0]['results_dir'])
    summary = json.load(open(os.path.join(results_dir, 'results.json')))
    assert summary['input_cached_images'] == NUM_TEST
    assert entries[0]['metrics'] == fresh['all'][0].metrics
    got = {k: v for k, v in _files(results_dir).items() if k != 'results.txt'}
    assert got == {k: v for k, v in fresh['all'][1].items() if k != 'results.txt'}


def test_watcher_fills_the_cache_before_a_checkpoint_already_there(
    data, fresh, records_read, tmp_path
):
    """Started when a checkpoint is there (a trainer writes one at step 0 seconds after its
    card), the watcher decodes the split alone first: that evaluation is fed from memory."""
    entries, lines, eval_dir = _watch_a_checkpoint_arrive(data, tmp_path, there=True)
    assert [e['status'] for e in entries] == ['evaluated'] and records_read() == 3
    decoding = [i for i, line in enumerate(lines) if "decoding the split's first" in line]
    evaluated = [i for i, line in enumerate(lines) if line.startswith('[watch] model.ckpt-5')]
    assert len(decoding) == 1 and decoding[0] < evaluated[0]
    results_dir = os.path.join(eval_dir, entries[0]['results_dir'])
    summary = json.load(open(os.path.join(results_dir, 'results.json')))
    assert summary['input_cached_images'] == NUM_TEST
    assert entries[0]['metrics'] == fresh['all'][0].metrics


def test_watcher_whose_fill_fails_goes_on_and_decodes(
    data, fresh, records_read, monkeypatch, tmp_path
):
    """A read error while the watcher fills its cache (here a transient one) is logged once and
    left to the evaluations: the watch goes on, and its first evaluation decodes the split."""
    fill = evaluate.CheckpointEvaluator.fill_input_cache
    fills = []

    def fails_once(evaluator, log=None):
        fills.append(1)
        if len(fills) == 1:
            raise tf.errors.UnavailableError(None, None, 'the disk went away')
        return fill(evaluator, log)

    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'fill_input_cache', fails_once)
    entries, lines, _ = _watch_a_checkpoint_arrive(data, tmp_path)
    assert [e['status'] for e in entries] == ['evaluated'] and len(fills) == 1
    assert entries[0]['metrics'] == fresh['all'][0].metrics
    assert (
        lines.count(
            '[watch] the input cache is not filled (UnavailableError: the disk went away); the '
            'evaluations decode the split.'
        )
        == 1
    )
    assert records_read() == 3  # the evaluation decoded the split (and filled the cache)
