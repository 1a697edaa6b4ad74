"""Flag values an audit found to fail late, with a traceback, by exhausting memory or by doing
nothing: each is now refused when the flags are parsed, naming the flag; the defaults and the
demo's commands still parse. Also the label layout's bound (a run detecting everything spent
minutes per image laying out thousands of labels) and the eval input's counts.

The scripts define their flags in absl's global FLAGS when imported: they are parsed in one child
process per script (`_parse`), never imported here."""

import json

import numpy as np
import pytest
import tensorflow as tf

from evaluation import input as eval_input
from inference import visualization
from model import card as card_lib
from model import cli
from tests.conftest import run_python

INT64_MAX = 2**63 - 1

# Each script's flags without a default that it requires to parse at all.
REQUIRED = {
    'eval_ssd_network': ['--checkpoint_path=train', '--eval_dir=eval', '--dataset_dir=records'],
    'export_ssd_network': ['--checkpoint_path=train', '--output_dir=export'],
    'detect_ssd_network': ['--input=photos', '--output_dir=out'],
    'benchmarks.bench_data': [],
    'benchmarks.bench_eval': [],
    'score_detections': [],
}

# Parses each case (argv after REQUIRED) afresh; prints {case: [ok, message]} as JSON.
_PARSER = r"""
import json, sys
from absl import flags
import {module}
required, cases = json.loads(sys.argv[1])
results = {{}}
for case in cases:
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(['prog', *required, *case])
        results[' '.join(case)] = [True, '']
    except flags.IllegalFlagValueError as err:
        results[' '.join(case)] = [False, str(err)]
print(json.dumps(results))
"""


def _parse(module, cases):
    """{' '.join(case): (parsed, error message)} of `module`'s flags, in a child process."""
    proc = run_python(_PARSER.format(module=module), json.dumps([REQUIRED[module], cases]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {case: tuple(result) for case, result in json.loads(proc.stdout).items()}


def _check(module, good, bad):
    """`good`: cases that parse; `bad`: {case: the flag the error must name}."""
    cases = [case.split() for case in good] + [case.split() for case in bad]
    results = _parse(module, cases)
    for case in good:
        assert results[case] == (True, ''), (case, results[case])
    for case, flag in bad.items():
        parsed, message = results[case]
        assert not parsed, case
        assert flag in message, (case, message)


MODEL_FLAGS_GOOD = [
    '',
    '--num_classes=2',
    '--num_classes=21',
    '--num_classes=100000',
    '--depth_multiplier=4',
]
MODEL_FLAGS_BAD = {
    # Refused late by the card's check ("SSD parameter depth_multiplier"), or, against a card,
    # told to pass --override_model_card.
    '--depth_multiplier=0': '--depth_multiplier',
    '--depth_multiplier=-1': '--depth_multiplier',
    '--depth_multiplier=nan': '--depth_multiplier',
    '--depth_multiplier=1000 --override_model_card': '--depth_multiplier',
    '--num_classes=0': '--num_classes',
    '--num_classes=1': '--num_classes',
    '--num_classes=-3': '--num_classes',
    '--num_classes=100001': '--num_classes',
    '--num_classes=100000000000': '--num_classes',  # built 1e11 class names: 24 GB, then killed
    '--num_classes=100000000000 --override_model_card': '--num_classes',
}


def test_eval_flags():
    good = MODEL_FLAGS_GOOD + [
        # run_demo.py's evaluation (bf16 run)
        '--depth_multiplier=0.25 --metrics=voc07,voc12 --compute_dtype=bfloat16',
        # the module docstring's watcher
        '--wait_for_checkpoints --num_threads=2 --eval_timeout=3600 --final_step=120000',
        '--max_num_batches=0',
        '--max_num_batches=3 --batch_size=2',
        f'--max_num_batches={INT64_MAX // 32}',
        '--batch_size=1024',
        '--num_threads=1024',
        '--eval_interval_secs=0.1',
        '--eval_interval_secs=0.2 --eval_timeout=0.5',  # test_eval_watcher's
        '--eval_interval_secs=86400',
        '--eval_timeout=0',
        '--final_step=0',
        '--max_number_of_steps=9',
        '--matching_threshold=1',
        '--matching_threshold=0.01',
        '--gpu_memory_fraction=1',
        '--gpu_memory_fraction=0.3',
    ]
    bad = {
        '--max_num_batches=-1': '--max_num_batches',  # evaluated nothing, exit 0
        f'--max_num_batches={INT64_MAX // 32 + 1}': 'max_num_batches',  # int64 overflow
        f'--max_num_batches={10**18}': 'max_num_batches',
        f'--max_num_batches={10**6} --batch_size={10**16}': '--batch_size',
        '--batch_size=0': '--batch_size',
        '--batch_size=1025': '--batch_size',
        '--num_threads=10000000000': '--num_threads',  # out of ConfigProto's int32
        '--eval_interval_secs=0': '--eval_interval_secs',  # a core at 100% beside training
        '--eval_interval_secs=0.01': '--eval_interval_secs',
        '--eval_interval_secs=-1': '--eval_interval_secs',
        '--eval_interval_secs=nan': '--eval_interval_secs',
        '--eval_interval_secs=inf': '--eval_interval_secs',  # OverflowError traceback
        '--eval_interval_secs=1e300': '--eval_interval_secs',
        '--eval_timeout=nan': '--eval_timeout',  # never timed out
        '--eval_timeout=inf': '--eval_timeout',
        '--eval_timeout=-1': '--eval_timeout',
        '--final_step=-5': '--final_step',  # stopped after the first checkpoint
        '--max_number_of_steps=-5': '--final_step',
        # Failed after the model was loaded, naming the metrics' iou_threshold.
        '--matching_threshold=0': '--matching_threshold',
        '--matching_threshold=1.5': '--matching_threshold',
        '--matching_threshold=-1': '--matching_threshold',
        '--matching_threshold=nan': '--matching_threshold',
        # Evaluated with rc 0: 0 as memory growth, -1 and nan without a word.
        '--gpu_memory_fraction=0': '--gpu_memory_fraction',
        '--gpu_memory_fraction=-1': '--gpu_memory_fraction',
        '--gpu_memory_fraction=nan': '--gpu_memory_fraction',
        '--gpu_memory_fraction=2': '--gpu_memory_fraction',
        # Its enum help and error showed the values as '<>=|>>'.
        '--iou_rule=>>': "--iou_rule must be '>=' (the VOC devkit) or '>'",
        '--iou_rule==>': '--iou_rule',
    }
    bad.update(MODEL_FLAGS_BAD)
    _check('eval_ssd_network', good + ['--iou_rule=>', '--iou_rule=>='], bad)


def test_export_flags():
    good = MODEL_FLAGS_GOOD + [
        # run_demo.py's export
        '--depth_multiplier=0.25 --formats=frozen_graph,tflite_float --dataset_name=custom '
        '--dataset_split_name=test --dataset_dir=records',
        '--num_calibration_images=10000',
        '--batch_size=1024 --tflite_batch_size=1024',
        '--tflite_batch_size=2 --num_calibration_images=50',  # test_detect_script's
    ]
    bad = {
        f'--num_calibration_images={10**20}': '--num_calibration_images',  # OverflowError
        '--num_calibration_images=10001': '--num_calibration_images',
        '--num_calibration_images=0': '--num_calibration_images',
        '--batch_size=1025': '--batch_size',
        '--batch_size=100000': '--batch_size',
        '--tflite_batch_size=100000': '--tflite_batch_size',  # hung
        '--tflite_batch_size=0': '--tflite_batch_size',
    }
    bad.update(MODEL_FLAGS_BAD)
    _check('export_ssd_network', good, bad)


def test_detect_flags():
    good = MODEL_FLAGS_GOOD + [
        '--frozen_graph=export/frozen_graph.pb --select_threshold=0.5',  # run_demo.py's
        '--checkpoint_path=train --select_threshold=0 --keep_top_k=0',  # every detection
        '--batch_size=3',
        '--batch_size=1024',
    ]
    bad = dict(MODEL_FLAGS_BAD)
    bad['--batch_size=0'] = '--batch_size'
    bad['--batch_size=1025'] = '--batch_size'
    bad[f'--batch_size={10**20}'] = '--batch_size'  # taken without a word
    _check('detect_ssd_network', good, bad)


def test_benchmark_flags():
    """Counts below 1 ended in tracebacks (bench_data: the generator's and converter's
    ValueErrors, no median of 0 repeats, TF's cycle_length error; bench_eval: a ValueError for
    --num_images or --batch_size) or were taken as 1 (--rounds); a negative --num_threads or
    --input_cache_mb and a nan --parity_tol were taken without a word."""
    _check(
        'benchmarks.bench_data',
        ['', '--num_images=1 --samples_per_file=1 --repeats=1 --num_readers=1024'],
        {
            '--num_images=0': '--num_images',
            '--num_images=-5': '--num_images',
            '--samples_per_file=0': '--samples_per_file',
            '--repeats=0': '--repeats',
            '--num_readers=0': '--num_readers',
            '--num_readers=100000': '--num_readers',
        },
    )
    _check(
        'benchmarks.bench_eval',
        [
            '',
            '--num_images=1 --batch_size=1 --rounds=1 --num_threads=1 --input_cache_mb=0 '
            '--num_calibration_images=1 --parity_tol=0',
            '--batch_size=1024 --num_calibration_images=10000',
        ],
        {
            '--num_images=0': '--num_images',
            '--batch_size=0': '--batch_size',
            '--batch_size=-2': '--batch_size',
            '--batch_size=1025': '--batch_size',
            '--rounds=0': '--rounds',
            '--num_threads=-1': '--num_threads',
            '--input_cache_mb=-1': '--input_cache_mb',
            '--num_calibration_images=0': '--num_calibration_images',
            '--parity_tol=nan': '--parity_tol',
            '--parity_tol=-1': '--parity_tol',
        },
    )


def test_num_classes_checked_before_class_names_are_built(tmp_path):
    """Without the flags' parser (a caller's ModelFlags): the same bound, before the 1e11 names
    of a card without a checkpoint's card, or of --override_model_card, were built."""
    card_lib.write(str(tmp_path / 'model.json'), card_lib.from_registry('ssd_300_vgg'))
    for num_classes in (0, 1, 10**11):
        for override, folder in ((False, tmp_path / 'none'), (True, tmp_path)):
            values = cli.ModelFlags(num_classes=num_classes, override_model_card=override)
            with pytest.raises(card_lib.CardError, match=f'--num_classes={num_classes}: '):
                cli.resolve_card(values, str(folder), log=lambda line: None)
    values = cli.ModelFlags(num_classes=10**11, override_model_card=True)
    with pytest.raises(card_lib.CardError, match='--num_classes='):
        cli.apply_structure_flags(
            card_lib.from_registry('ssd_300_vgg'), values, 'model.json', lambda line: None
        )


def test_from_registry_checks_the_class_count_before_building_names(monkeypatch):
    """`card.from_registry` built its default class names before the card's check refused
    the count: 10**7 took 2 s and 700 MB, 10**11 would exhaust memory."""
    counts = []
    names = card_lib.default_class_names

    def spy(count):
        counts.append(count)
        assert count <= 100_000, f'{count} class names built'
        return names(count)

    monkeypatch.setattr(card_lib, 'default_class_names', spy)
    for count in (10**11, 100_001, 0):
        with pytest.raises(card_lib.CardError, match=f'num_classes is {count}, expected'):
            card_lib.from_registry('ssd_300_vgg', count)
    assert counts == []
    assert card_lib.from_registry('ssd_300_vgg', 3).class_names == ('class_1', 'class_2')
    assert counts == [3]


# ---------------------------------------------------------------------------------------------
# Evaluation input counts.


# The ground truth of the 5 records: one object each, every flag combination.
LABELS = [[1], [2], [3], [4], [5]]
BBOXES = [[[0.1 * i, 0.2, 0.5, 0.05 * i + 0.6]] for i in range(5)]
DIFFICULT = [[0], [1], [0], [1], [0]]
ISCROWD = [[0], [0], [1], [1], [0]]


class _Records:
    """A DetectionDataset's `make_dataset` of 5 tiny records."""

    def make_dataset(self, shuffle=False, num_parallel_calls=None, skip=0):
        n = 5
        return tf.data.Dataset.from_tensor_slices(
            {
                'image': tf.zeros([n, 4, 4, 3], tf.uint8),
                'labels': tf.constant(LABELS, tf.int64),
                'bboxes': tf.constant(BBOXES, tf.float32),
                'difficult': tf.constant(DIFFICULT, tf.int64),
                'iscrowd': tf.constant(ISCROWD, tf.int64),
                'shape': tf.constant([[4, 4, 3]] * n, tf.int32),
                'filename': tf.constant([f'{i}.jpg' for i in range(n)]),
                'image_id': tf.range(n, dtype=tf.int64),
                'coco_annotations': tf.constant([''] * n),
            }
        ).skip(skip)


def _preprocess(image, labels, bboxes, out_shape, **_):
    return tf.cast(image, tf.float32), labels, bboxes, tf.constant([0.0, 0.0, 1.0, 1.0])


def _images(batches):
    return sum(int(batch['shape'].shape[0]) for batch in batches)


def test_eval_input_counts():
    """A count of images beyond int64 (the flags refuse it; a caller may pass it) takes every
    image instead of an OverflowError; a negative count, which took none, is an error."""
    for huge in (10**18, INT64_MAX, 2**70):
        made = eval_input.make_eval_dataset(
            _Records(), _preprocess, (4, 4), 32, max_num_batches=huge
        )
        assert _images(made) == 5
        raw = eval_input.make_raw_eval_dataset(_Records(), 2, max_num_batches=huge)
        assert _images(raw) == 5
    assert (
        _images(eval_input.make_eval_dataset(_Records(), _preprocess, (4, 4), 2, max_num_batches=0))
        == 5
    )
    assert _images(eval_input.make_raw_eval_dataset(_Records(), 2, max_num_batches=2)) == 4
    # Records skipped (held by the input cache) count: 3 skipped of a limit of 2 leave none,
    # 1 skipped leaves 1.
    for skip, left in ((3, 0), (1, 1)):
        made = eval_input.make_eval_dataset(
            _Records(), _preprocess, (4, 4), 2, max_num_batches=1, skip=skip
        )
        assert _images(made) == left, skip
    with pytest.raises(ValueError, match='batch_size must be >= 1, got 0'):
        eval_input.make_eval_dataset(_Records(), _preprocess, (4, 4), 0)
    for make in (
        lambda: eval_input.make_eval_dataset(
            _Records(), _preprocess, (4, 4), 2, max_num_batches=-1
        ),
        lambda: eval_input.make_raw_eval_dataset(_Records(), 2, max_num_batches=-1),
    ):
        with pytest.raises(ValueError, match='max_num_batches must be >= 0'):
            make()


def test_eval_batches_hold_each_records_ground_truth():
    """Difficult and crowd flags, labels and boxes reach their own batch keys (COCO records
    flag a crowd region difficult too, so only other records tell the two apart)."""
    for made in (
        eval_input.make_eval_dataset(_Records(), _preprocess, (4, 4), 5),
        eval_input.make_raw_eval_dataset(_Records(), 5),
    ):
        (batch,) = list(made)
        np.testing.assert_array_equal(batch['gt_difficult'], DIFFICULT)
        np.testing.assert_array_equal(batch['gt_crowd'], ISCROWD)
        np.testing.assert_array_equal(batch['gt_labels'], LABELS)
        np.testing.assert_allclose(batch['gt_bboxes'], BBOXES)
        np.testing.assert_array_equal(batch['num_gt'], [1] * 5)
        np.testing.assert_array_equal(batch['image_id'], range(5))


# ---------------------------------------------------------------------------------------------
# Label layout: bounded.


def _detections(n, seed=0):
    rng = np.random.default_rng(seed)
    ymin, xmin = rng.uniform(0, 0.8, n), rng.uniform(0, 0.8, n)
    boxes = np.stack([ymin, xmin, ymin + rng.uniform(0.05, 0.2, n), xmin + 0.2], axis=1)
    # All in a few columns, as a --select_threshold=0 run's overlapping boxes are.
    boxes[:, 1] = np.round(boxes[:, 1] * 4) / 4
    boxes[:, 3] = boxes[:, 1] + 0.2
    return {
        'boxes': boxes.astype(np.float32),
        'scores': rng.uniform(0, 1, n).astype(np.float32),
        'classes': rng.integers(1, 21, n),
    }


NAMES = [f'class_{i}' for i in range(1, 21)]


def _spy(monkeypatch):
    """Records the boxes `draw_detections` hands `layout_labels`."""
    calls = []
    layout = visualization.layout_labels

    def spy(boxes, sizes, height, width):
        calls.append(list(boxes))
        return layout(boxes, sizes, height, width)

    monkeypatch.setattr(visualization, 'layout_labels', spy)
    return calls


def test_many_detections_lay_out_the_best_scoring_labels_only(monkeypatch):
    """1632 labels took 85 s (the layout is cubic in their count); at most MAX_LABELS, the
    best-scoring, are laid out now, and the others' boxes are drawn."""
    calls = _spy(monkeypatch)
    image = np.full((375, 500, 3), 255, np.uint8)
    dets = _detections(2000)
    assert visualization.unlabelled_count(dets) == 2000 - visualization.MAX_LABELS
    assert visualization.unlabelled_count(dets, min_score=2.0) == 0
    out = visualization.draw_detections(image, dets, NAMES)
    (laid_out,) = calls
    assert len(laid_out) == visualization.MAX_LABELS == 300
    best = np.argsort(-dets['scores'], kind='stable')[: visualization.MAX_LABELS]
    assert laid_out == [visualization._pixel_box(dets['boxes'][i], 375, 500) for i in best]
    # An unlabelled box is drawn: one alone, with no label (max_labels=0).
    worst = int(np.argmin(dets['scores']))
    one = {k: v[worst : worst + 1] for k, v in dets.items()}
    alone = visualization.draw_detections(image, one, NAMES, max_labels=0)
    color = np.array(visualization.color_of(one['classes'][0]), np.uint8)
    x0, y0, x1, y1 = visualization._pixel_box(one['boxes'][0], 375, 500)
    assert (alone[y0, x0:x1] == color).all()
    labelled = visualization.draw_detections(image, one, NAMES)
    assert (labelled == color).all(-1).sum() > (alone == color).all(-1).sum()
    assert out.shape == image.shape


@pytest.mark.parametrize('n', [1, 7, 60, 300])
def test_usual_counts_are_drawn_as_without_a_bound(monkeypatch, n):
    """Up to MAX_LABELS (above the usual keep_top_k, 200), every detection is labelled: the
    image is the one drawn without a bound."""
    calls = _spy(monkeypatch)
    image = np.full((300, 400, 3), 200, np.uint8)
    dets = _detections(n, seed=n)
    assert visualization.unlabelled_count(dets) == 0
    bounded = visualization.draw_detections(image, dets, NAMES)
    unbounded = visualization.draw_detections(image, dets, NAMES, max_labels=None)
    assert np.array_equal(bounded, unbounded)
    assert [len(c) for c in calls] == [n, n]


def test_score_detections_iou_threshold():
    """--iou_threshold=50 (a percentage) failed after the files were read, naming a
    `iou_threshold` without its dashes; bounded as eval's --matching_threshold."""
    _check(
        'score_detections',
        ['--iou_threshold=1', '--iou_threshold=0.01'],
        {
            '--iou_threshold=50': '--iou_threshold',
            '--iou_threshold=0': '--iou_threshold',
            '--iou_threshold=nan': '--iou_threshold',
        },
    )


def test_score_detections_iou_rule():
    """Its enum showed the values as '<>=|>>' (eval's had been fixed alone)."""
    results = _parse('score_detections', [['--iou_rule=>'], ['--iou_rule=>='], ['--iou_rule=gt']])
    assert results['--iou_rule=>'] == results['--iou_rule=>='] == (True, '')
    assert not results['--iou_rule=gt'][0]
    assert (
        "--iou_rule must be '>=' (the VOC devkit) or '>' (common Python ports)"
        in (results['--iou_rule=gt'][1])
    )
