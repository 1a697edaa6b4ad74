"""eval_ssd_network.py end to end on a tiny synthetic dataset with a random-weight MobileNet SSD:
results agree with offline scoring of the written files, detections come back in the right
pixels, COCO numbers equal pycocotools run directly, summaries and plots are written."""

import dataclasses
import glob
import json
import os
from urllib.parse import unquote
import threading
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation import evaluate
from evaluation import input as eval_input
from evaluation import outputs as eval_outputs
from evaluation import scoring
from model import card as card_lib
from model import checkpoints
from tests import eval_fixtures
from tests import script_server
from tests.conftest import script_env
from preprocessing import preprocessing_factory
from tf_extended import bboxes as tfe_bboxes
from tf_extended import coco_metrics
from tf_extended import voc_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = 'ssd_300_mobilenet'
DEPTH = 0.25
STEP = 100


def _run(args):
    proc = script_server.run(args, ROOT, script_env(), 300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('eval_data'))
    voc_dir, records_dir, class_names = eval_fixtures.make_synthetic_records(
        root, num_images=24, seed=3, spaced_ids=2
    )
    prefix = eval_fixtures.write_random_checkpoint(
        os.path.join(root, 'train', 'model.ckpt'),
        MODEL,
        len(class_names) + 1,
        STEP,
        seed=1,
        depth_multiplier=DEPTH,
    )
    return {
        'root': root,
        'voc_dir': voc_dir,
        'records_dir': records_dir,
        'class_names': class_names,
        'prefix': prefix,
    }


def _settings(data, **overrides):
    """EvalSettings of the random-weight model on the `data` split, without PR curves."""
    return evaluate.EvalSettings(
        card=eval_fixtures.small_card(MODEL, data['class_names'], DEPTH),
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=data['records_dir'],
        pr_curves=False,
        **overrides,
    )


@pytest.fixture(scope='module')
def evaluated(data):
    eval_dir = os.path.join(data['root'], 'eval')
    # A directory as --checkpoint_path (its latest checkpoint); 6 images in batches of 4. Many
    # loosely suppressed detections, so that random weights produce some true positives.
    stdout = _run(
        [
            'eval_ssd_network.py',
            f'--checkpoint_path={os.path.dirname(data["prefix"])}',
            f'--eval_dir={eval_dir}',
            '--dataset_name=custom',
            '--dataset_split_name=test',
            f'--dataset_dir={data["records_dir"]}',
            f'--model_name={MODEL}',
            f'--depth_multiplier={DEPTH}',
            '--batch_size=4',
            '--eval_resize=PAD_AND_RESIZE',
            '--metrics=voc07,voc12,coco',
            '--num_threads=2',
            '--keep_top_k=1000',
            '--nms_threshold=0.9',
        ]
    )
    with open(os.path.join(eval_dir, 'results.json')) as fh:
        return eval_dir, json.load(fh), stdout


def test_eval_equals_offline_scoring_of_its_results_files(data, evaluated):
    eval_dir, summary, stdout = evaluated
    assert summary['num_images'] == 6 and summary['global_step'] == STEP
    assert 'images/s' in stdout
    # Random weights still find something: the comparison is not between two zeros.
    assert sum(c['num_tp'] for c in summary['classes']) > 0
    assert summary['metrics']['voc07'] > 0
    # Two test ids hold spaces and a '%' (LabelImg-style names): the results files' first column
    # has them percent-encoded, and the offline scoring reads them back as those ids.
    first_columns = {
        line.split(' ')[0]
        for name in os.listdir(eval_dir)
        if name.startswith('comp4_det_test_')
        for line in open(os.path.join(eval_dir, name)).read().splitlines()
    }
    assert len({c for c in first_columns if c.endswith('%20(copy%201%25)')}) == 2
    offline = scoring.score_voc_results(eval_dir, data['voc_dir'], 'test', data['class_names'])
    assert offline.map_voc07 == pytest.approx(summary['metrics']['voc07'], abs=1e-12)
    assert offline.map_voc12 == pytest.approx(summary['metrics']['voc12'], abs=1e-12)
    for c, row in zip(offline.classes, summary['classes']):
        assert (c.name, c.num_gt, c.num_difficult, c.num_tp, c.num_fp) == (
            row['name'],
            row['num_gt'],
            row['num_difficult'],
            row['num_tp'],
            row['num_fp'],
        )
        assert c.ap_voc07 == pytest.approx(row['ap_voc07'], abs=1e-12)
    for rule in ('voc07', 'voc12'):  # results.json's per-class APs, each of its own rule
        assert summary['class_ap'][rule] == pytest.approx(offline.ap(rule), abs=1e-12)
    printed = _run(
        [
            'score_detections.py',
            f'--results_dir={eval_dir}',
            f'--voc_dir={data["voc_dir"]}',
            '--split=test',
        ]
    )
    map_line = [line for line in printed.splitlines() if 'mAP' in line][0]
    assert map_line.split()[-2] == f'{100 * summary["metrics"]["voc07"]:.2f}'


def test_coco_metrics_equal_pycocotools_on_the_written_files(data, evaluated):
    eval_dir, summary, _ = evaluated
    gt = COCO(os.path.join(eval_dir, 'coco_ground_truth.json'))
    dt = gt.loadRes(os.path.join(eval_dir, 'coco_detections.json'))
    coco_eval = COCOeval(gt, dt, iouType='bbox')
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    assert summary['metrics']['coco'] == pytest.approx(coco_eval.stats[0], abs=1e-12)
    assert summary['coco']['AP50'] == pytest.approx(coco_eval.stats[1], abs=1e-12)
    # The COCO ground truth is the XML's pixels: x = xmin - 1, w = xmax - xmin + 1.
    image = gt.dataset['images'][0]
    root = ET.parse(
        os.path.join(data['voc_dir'], 'Annotations', image['file_name'] + '.xml')
    ).getroot()
    expected = sorted(
        [
            float(o.findtext('bndbox/xmin')) - 1,
            float(o.findtext('bndbox/ymin')) - 1,
            float(o.findtext('bndbox/xmax')) - float(o.findtext('bndbox/xmin')) + 1,
            float(o.findtext('bndbox/ymax')) - float(o.findtext('bndbox/ymin')) + 1,
        ]
        for o in root.findall('object')
    )
    got = sorted(a['bbox'] for a in gt.dataset['annotations'] if a['image_id'] == image['id'])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    # The same detections in both formats: VOC xmin = COCO x + 1, xmax = x + w.
    voc_lines = []
    for name in data['class_names']:
        with open(os.path.join(eval_dir, f'comp4_det_test_{name}.txt')) as fh:
            voc_lines += [line.split() for line in fh]
    ids = {img['id']: img['file_name'] for img in gt.dataset['images']}
    with open(os.path.join(eval_dir, 'coco_detections.json')) as fh:
        coco_dets = json.load(fh)
    assert len(coco_dets) == len(voc_lines)
    from_coco = sorted(
        (
            ids[d['image_id']],
            round(d['score'], 6),
            round(d['bbox'][0] + 1, 3),
            round(d['bbox'][0] + d['bbox'][2], 3),
        )
        for d in coco_dets
    )
    from_voc = sorted(
        (unquote(f[0]), round(float(f[1]), 6), round(float(f[2]), 3), round(float(f[4]), 3))
        for f in voc_lines
    )
    assert from_coco == from_voc


def test_coco_per_class_ap_equals_pycocotools_on_the_written_files(evaluated):
    """results.json, results.txt, the printed table and TensorBoard carry per-class COCO AP equal to
    pycocotools' precision array of the written files, averaged as summarize does."""
    eval_dir, summary, stdout = evaluated
    gt = COCO(os.path.join(eval_dir, 'coco_ground_truth.json'))
    coco_eval = COCOeval(
        gt, gt.loadRes(os.path.join(eval_dir, 'coco_detections.json')), iouType='bbox'
    )
    coco_eval.evaluate()
    coco_eval.accumulate()
    precision = coco_eval.eval['precision'][:, :, :, 0, 2]  # area 'all', maxDets 100: [T, R, K]
    names = {c['id']: c['name'] for c in gt.dataset['categories']}
    expected, expected50 = {}, {}
    for k, category in enumerate(coco_eval.params.catIds):
        present = bool((precision[:, :, k] > -1).any())
        expected[names[category]] = precision[:, :, k].mean() if present else None
        expected50[names[category]] = precision[0, :, k].mean() if present else None
    assert summary['class_ap']['coco'] == pytest.approx(expected, abs=1e-12)
    assert {row['name']: row['ap50_coco'] for row in summary['classes']} == pytest.approx(
        expected50, abs=1e-12
    )
    assert {row['name']: row['ap_coco'] for row in summary['classes']} == summary['class_ap'][
        'coco'
    ]
    aps = [ap for ap in expected.values() if ap is not None]
    assert aps and np.mean(aps) == pytest.approx(summary['metrics']['coco'], abs=1e-12)
    with open(os.path.join(eval_dir, 'results.txt')) as fh:
        text = fh.read()
    tags = {}
    for path in glob.glob(os.path.join(eval_dir, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update({value.tag: value.simple_value for value in event.summary.value})
    width = max(len(row['name']) for row in summary['classes'] + [{'name': 'class'}])
    for row in summary['classes']:
        ap, ap50 = row['ap_coco'], row['ap50_coco']
        cells = ('absent', 'absent') if ap is None else (f'{100 * ap:.2f}', f'{100 * ap50:.2f}')
        line = f'{row["label"]:>5}  {row["name"]:<{width}}  {cells[0]:>6}  {cells[1]:>6}'
        assert line in text.splitlines() and line in stdout.splitlines()
        if ap is not None:
            assert tags[f'eval/coco_AP/{row["name"]}'] == pytest.approx(ap, rel=1e-6)
    # Offline scoring of the written files prints the same per-class table.
    printed = _run(
        [
            'score_detections.py',
            f'--coco_results={os.path.join(eval_dir, "coco_detections.json")}',
            f'--coco_annotations={os.path.join(eval_dir, "coco_ground_truth.json")}',
        ]
    )
    table = [line for line in text.splitlines() if line.startswith('COCO')][0]
    assert table in printed
    for row in summary['classes']:
        assert any(
            line.startswith(f'{row["label"]:>5}  {row["name"]:<{width}}  ')
            and line.split()[2]
            == ('absent' if row['ap_coco'] is None else f'{100 * row["ap_coco"]:.2f}')
            for line in printed.splitlines()
        )


def test_tensorboard_reads_the_evaluation_scalars(evaluated):
    """TensorBoard (installed by requirements.txt: TF 2.21 no longer brings it) reads the
    evaluation's event file: the mAPs at the checkpoint's step, as results.json has them."""
    from tensorboard.backend.event_processing import event_accumulator

    eval_dir, summary, _ = evaluated
    events = event_accumulator.EventAccumulator(eval_dir)
    events.Reload()
    for metric in ('voc07', 'voc12', 'coco'):
        (scalar,) = events.Scalars(f'eval/{metric}_mAP')
        assert scalar.step == STEP
        assert scalar.value == pytest.approx(summary['metrics'][metric], rel=1e-6)


def test_coco_table_and_class_ap_with_an_absent_class():
    result = coco_metrics.COCOResult(
        metrics=dict(zip(coco_metrics.COCO_METRIC_NAMES, [0.25, 0.5] + [None] * 10)),
        class_ap={'cat': 0.25, 'dog': None},
        class_ap50={'cat': 0.5, 'dog': None},
    )
    lines = eval_outputs.format_coco_table(result, {1: 'cat', 2: 'dog'}).splitlines()
    assert lines[1:6] == [
        'label  class    AP %  AP50 %',
        '-' * 28,
        '    1  cat     25.00   50.00',
        '    2  dog    absent  absent',
        '-' * 28,
    ]
    assert lines[6] == '       mAP     25.00   50.00  (over 1 of 2 classes)'
    assert lines[7].startswith('COCO: AP 25.00, AP50 50.00, AP75 n/a')
    class_ap = eval_outputs.per_class_ap(None, result.class_ap, ('coco',))
    assert class_ap == {'coco': {'cat': 0.25, 'dog': None}}
    with pytest.raises(ValueError, match="'coco' is requested but no COCO per-class AP"):
        eval_outputs.per_class_ap(None, None, ('coco',))


def test_summaries_and_plots(data, evaluated):
    eval_dir, summary, _ = evaluated
    values = {}
    for path in glob.glob(os.path.join(eval_dir, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[(value.tag, event.step)] = value.simple_value
    assert values[('eval/voc07_mAP', STEP)] == pytest.approx(summary['metrics']['voc07'], rel=1e-6)
    assert values[('eval/coco_mAP', STEP)] == pytest.approx(summary['metrics']['coco'], rel=1e-6)
    # The 12 COCO numbers, as results.json has them (only AP was written).
    coco = {name: value for name, value in summary['coco'].items() if value is not None}
    assert len(coco) > 6 and coco['AP'] == summary['metrics']['coco']
    assert {
        tag[len('eval/coco/') :]: value
        for (tag, step), value in values.items()
        if tag.startswith('eval/coco/') and step == STEP
    } == pytest.approx(coco, rel=1e-6)
    name = data['class_names'][0]
    assert values[(f'eval/voc12_AP/{name}', STEP)] == pytest.approx(
        summary['class_ap']['voc12'][name], rel=1e-6
    )
    present = [c['name'] for c in summary['classes'] if c['num_gt'] > c['num_difficult']]
    assert sorted(os.listdir(os.path.join(eval_dir, 'pr_curves'))) == sorted(
        f'pr_{n}.png' for n in present
    )
    with open(os.path.join(eval_dir, 'results.txt')) as fh:
        assert 'mAP' in fh.read()
    assert not [n for n in os.listdir(eval_dir) if n.startswith('.')]  # no temporary files left


def test_ground_truth_as_detections_comes_back_in_original_pixels(data, monkeypatch, tmp_path):
    """The net's detections replaced by the ground truth moved into the network-input frame of
    PAD_AND_RESIZE: every class gets AP 1 and the results files hold the XML's pixel boxes."""
    original = evaluate.build_detections

    def ground_truth_detections(net, batch, settings):
        original(net, batch, settings)  # builds the variables the checkpoint restores
        boxes = tf.map_fn(
            lambda a: tfe_bboxes.bboxes_unresize(a[0], a[1]),
            (batch['bbox_img'], batch['gt_bboxes']),
            fn_output_signature=tf.float32,
        )
        valid = batch['gt_labels'] > 0
        return {
            'detection_boxes': boxes,
            'detection_scores': tf.where(valid, 0.9, 0.0),
            'detection_classes': tf.cast(batch['gt_labels'], tf.int32),
            'num_detections': batch['num_gt'],
        }

    monkeypatch.setattr(evaluate, 'build_detections', ground_truth_detections)
    settings = _settings(data, batch_size=4, eval_resize='PAD_AND_RESIZE')
    out = str(tmp_path / 'eval')
    result = evaluate.evaluate_checkpoint(settings, data['prefix'], out, log=lambda line: None)
    assert result.metrics == pytest.approx({'voc07': 1.0, 'voc12': 1.0}, abs=1e-12)
    for label, name in enumerate(data['class_names'], 1):
        with open(os.path.join(out, f'comp4_det_test_{name}.txt')) as fh:
            got = sorted(
                (unquote(f[0]),) + tuple(round(float(v), 2) for v in f[2:])
                for f in map(str.split, fh)
            )
        expected = []
        for xml in glob.glob(os.path.join(data['voc_dir'], 'Annotations', '*.xml')):
            image_id = os.path.basename(xml)[:-4]
            if image_id not in {g[0] for g in got}:
                continue
            for obj in ET.parse(xml).getroot().findall('object'):
                if obj.findtext('name') == name:
                    expected.append(
                        (image_id,)
                        + tuple(
                            float(obj.findtext(f'bndbox/{t}'))
                            for t in ('xmin', 'ymin', 'xmax', 'ymax')
                        )
                    )
        assert got == sorted(expected), name


def test_map_to_image_pad_and_resize_against_hand_computed_boxes():
    """A 100x200 image padded into 300x300: rows 75..225 of the output show it (scale 1.5)."""
    with tf.Graph().as_default():
        pipeline = preprocessing_factory.get_preprocessing(MODEL)
        image = tf.zeros([100, 200, 3], tf.uint8)
        _, _, _, bbox_img = pipeline(
            image,
            tf.zeros([0], tf.int64),
            tf.zeros([0, 4]),
            (300, 300),
            is_training=False,
            resize='PAD_AND_RESIZE',
        )
        dets = tf.constant([[[0.25, 0.0, 0.75, 1.0], [0.3, 0.1, 0.5, 0.4], [0.1, 0.2, 0.6, 0.3]]])
        mapped = eval_input.map_to_image(bbox_img[None], dets)
        with tf.compat.v1.Session() as sess:
            got = sess.run(mapped)[0]
    out = np.array([[0.25, 0.0, 0.75, 1.0], [0.3, 0.1, 0.5, 0.4], [0.1, 0.2, 0.6, 0.3]]) * 300
    rows = (out[:, [0, 2]] - 75) / 150  # output rows 75..225 show the 100 image rows
    cols = out[:, [1, 3]] / 300
    expected = np.clip(np.stack([rows[:, 0], cols[:, 0], rows[:, 1], cols[:, 1]], axis=1), 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_json_of_an_older_caffe_conversion_loads_as_a_card(tmp_path):
    """`<ckpt>.json` of caffe_to_tensorflow.py before model cards: params, Caffe's
    DetectionOutput names and the normalisation become the card's."""
    path = tmp_path / 'model.ckpt.json'
    path.write_text(
        json.dumps(
            {
                'model_name': MODEL,
                'backbone_only': False,
                'ssd_params': {'num_classes': 21, 'anchor_steps': [16, 32, 64, 100, 150, 300]},
                'detection': {
                    'nms_threshold': 0.45,
                    'top_k': 100,
                    'keep_top_k': 100,
                    'confidence_threshold': 0.25,
                },
                'preprocessing': {
                    'channel_order': 'RGB',
                    'mean_rgb': [127.5, 127.5, 127.5],
                    'scale': 0.007843,
                },
                'source': {'caffemodel': '/x/MobileNetSSD_deploy.caffemodel'},
            }
        )
    )
    open(tmp_path / 'model.ckpt.index', 'w').close()
    assert card_lib.find_for_checkpoint(str(tmp_path / 'model.ckpt')) == str(path)
    card = card_lib.load(str(path))
    assert card.detection == card_lib.DetectionSettings(
        select_threshold=0.25, nms_threshold=0.45, top_k=100, keep_top_k=100
    )
    assert card.mean_rgb == (127.5, 127.5, 127.5) and card.scale == 0.007843
    net = card.net()
    assert net.params.anchor_steps == (16, 32, 64, 100, 150, 300) and net.params.num_classes == 21
    path.write_text(json.dumps({'model_name': MODEL, 'ssd_params': {'nms': 0.5}}))
    with pytest.raises(ValueError, match='unknown SSD parameter'):
        card_lib.load(str(path))


def _one_kind_of_weights(prefix, output_prefix, kind):
    """Saves at `output_prefix` the checkpoint `prefix` with the moving averages of its trainable
    variables (`kind` 'averages') or their weights ('weights') as both their weights and their
    averages (`<name>/ExponentialMovingAverage`); returns the prefix written. Restored with or
    without the averages, it detects what that kind of the checkpoint's weights detects."""
    reader = tf.train.load_checkpoint(prefix)
    suffix = checkpoints.AVERAGE_SUFFIX
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    for name in [n[: -len(suffix)] for n in values if n.endswith(suffix)]:
        values[name] = values[name + suffix] = values[name + suffix if kind == 'averages' else name]
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        variables = {
            name: tf.compat.v1.Variable(value, name=name.replace('/', '_'))
            for name, value in values.items()
        }
        sess.run(tf.compat.v1.global_variables_initializer())
        return tf.compat.v1.train.Saver(variables).save(sess, output_prefix, write_meta_graph=False)


def _devkit_rows(eval_dir):
    """{(class, image id): float64 [N, 5] score and box rows} of an evaluation's devkit files."""
    rows = {}
    for path in glob.glob(os.path.join(eval_dir, 'comp4_det_test_*.txt')):
        name = os.path.basename(path)[len('comp4_det_test_') : -len('.txt')]
        with open(path) as fh:
            for image_id, *numbers in map(str.split, fh):
                rows.setdefault((name, image_id), []).append([float(n) for n in numbers])
    return {key: np.array(value) for key, value in rows.items()}


def _same_rows(got, expected):
    return got.keys() == expected.keys() and all(
        got[key].shape == rows.shape and np.allclose(got[key], rows, rtol=1e-5, atol=1e-4)
        for key, rows in expected.items()
    )


def test_moving_average_decay_evaluates_the_averages(data, tmp_path):
    """--moving_average_decay: the evaluation detects what the checkpoint's averages detect (a
    copy holding them as its weights too), not what its weights detect (they differ: see
    write_random_checkpoint); asked of a checkpoint without averages, a clear error."""
    prefix = eval_fixtures.write_random_checkpoint(
        str(tmp_path / 'model.ckpt'),
        MODEL,
        len(data['class_names']) + 1,
        5,
        moving_average_decay=0.999,
        depth_multiplier=DEPTH,
    )
    settings = _settings(
        data, batch_size=2, max_num_batches=1, metrics=('voc07',), moving_average_decay=0.999
    )
    with evaluate.CheckpointEvaluator(settings) as evaluator:

        def detections(checkpoint, name):
            evaluator.evaluate(checkpoint, str(tmp_path / name), log=lambda _: None)
            return _devkit_rows(str(tmp_path / name))

        got = detections(prefix, 'eval')
        kinds = {
            kind: detections(
                _one_kind_of_weights(prefix, str(tmp_path / kind / 'model.ckpt-5'), kind), kind
            )
            for kind in ('averages', 'weights')
        }
        with pytest.raises(ValueError, match='leave --moving_average_decay unset'):
            evaluator.evaluate(data['prefix'], str(tmp_path / 'plain'), log=lambda _: None)
    assert got and _same_rows(got, kinds['averages'])
    assert not _same_rows(got, kinds['weights'])


def test_compute_dtype_recorded_and_checked(evaluated):
    """The float32 default is recorded in results.json; unknown types are refused. That
    --compute_dtype=bfloat16 reaches the eval graph is tested against a float32 reference in
    test_non_square.py."""
    assert evaluated[1]['settings']['model_card']['compute_dtype'] == 'float32'
    with pytest.raises(ValueError, match='compute_dtype'):
        eval_fixtures.small_card(MODEL, ['a']).replace(compute_dtype='int8')


def test_event_files_written_in_one_second_keep_both(tmp_path):
    """TF names an event file by the second and the host: two evaluations writing into one folder
    in the same second (as here, back to back) must still leave two files with their values."""
    for step, value in ((10, 0.25), (20, 0.5)):
        eval_outputs.write_tensorboard(str(tmp_path), step, {'voc07': value}, {})
    read = {}
    for path in glob.glob(os.path.join(str(tmp_path), 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            read.update({event.step: value.simple_value for value in event.summary.value})
    assert len(glob.glob(os.path.join(str(tmp_path), 'events.out.tfevents.*'))) == 2
    assert read == {10: 0.25, 20: 0.5}


def test_reused_evaluator_after_a_failed_evaluation(data, tmp_path, monkeypatch):
    """An evaluation failing part-way stops its input thread before the error reaches the caller
    (kept, it would take the next evaluation's batches from the shared session); the same
    evaluator then gives what a fresh evaluation gives."""
    # Six batches of one: when the second fails, the input thread still has batches to read, so
    # one left running shows here (of three batches of two it may have read all by then).
    settings = _settings(data, batch_size=1)
    add_batch = evaluate._Metrics.add_batch

    def fail_at_the_second_batch(metrics, out):
        if metrics.done:
            raise RuntimeError('metrics failed')
        add_batch(metrics, out)

    with evaluate.CheckpointEvaluator(settings) as evaluator:
        # Its first evaluation is what a fresh evaluation gives (evaluate_checkpoint is one).
        fresh = evaluator.evaluate(data['prefix'], str(tmp_path / 'fresh'), log=lambda _: None)
        with monkeypatch.context() as patch:
            patch.setattr(evaluate._Metrics, 'add_batch', fail_at_the_second_batch)
            with pytest.raises(RuntimeError) as failed:
                evaluator.evaluate(data['prefix'], str(tmp_path / 'failed'), log=lambda _: None)
        assert failed.value is not None  # the error (and its traceback) still held here
        assert not [t for t in threading.enumerate() if t.name == 'eval-prefetch']
        again = evaluator.evaluate(data['prefix'], str(tmp_path / 'again'), log=lambda _: None)
    assert again.num_images == fresh.num_images == 6
    assert (again.metrics, again.class_ap) == (fresh.metrics, fresh.class_ap)


def test_evaluating_the_training_split_warns(data, caplog):
    """The card's provenance names the split it was trained on: evaluating there (an easy
    mistake, the mAP looks good) says so."""
    settings = _settings(data)
    trained = {'name': 'custom', 'split': 'test', 'dir': data['records_dir'] + os.sep}
    for provenance, warned in (({'dataset': trained}, True), ({}, False)):
        card = settings.card.replace(provenance=provenance)
        caplog.clear()
        dataset, _ = evaluate.open_dataset(settings, card)
        assert evaluate.trained_on(card, dataset) is warned
        assert [r.getMessage() for r in caplog.records] == (
            [
                f'Evaluating on custom/test in {data["records_dir"]}, the split the model was '
                f'trained on (its card says so): the mAP measures how it fits its training '
                f'images, not how it does on new ones.'
            ]
            if warned
            else []
        )
    other = dict(trained, split='train')
    assert not evaluate.trained_on(settings.card.replace(provenance={'dataset': other}), dataset)
    # A resumed training that went on with this split (see trainer._resume_record).
    resumed = {'dataset': other, 'resumed': [{'step': 5, 'changes': {}}, {'dataset': trained}]}
    assert evaluate.trained_on(settings.card.replace(provenance=resumed), dataset)


def test_evaluating_images_the_training_records_hold_warns(data, tmp_path, caplog):
    """The older port's command converted VOC2007 without --split into voc_2007_train: every
    annotation, test.txt's ids too. Evaluating on the test split then gave a leaked mAP without
    a word: the records' metadata (the converter's source folder and --split) tell."""
    records = str(tmp_path / 'records')
    for split, name in ((None, 'all'), ('test', 'test'), ('train', 'train'), ('trainval', 'tv')):
        _run(
            [
                'tf_convert_data.py',
                '--dataset_name=pascalvoc',
                f'--dataset_dir={data["voc_dir"]}',
                f'--labels_file={os.path.join(data["voc_dir"], "labels.txt")}',
                f'--output_dir={records}',
                f'--output_name={name}',
                *([f'--split={split}'] if split else []),
            ]
        )
    voc = os.path.realpath(data['voc_dir'])
    for evaluated, trained, converted in (
        ('test', 'all', f'{voc} (no --split: every annotation)'),
        ('test', 'train', None),
        ('test', 'tv', None),
    ):
        settings = dataclasses.replace(
            _settings(data), dataset_split_name=evaluated, dataset_dir=records
        )
        card = settings.card.replace(
            provenance={'dataset': {'name': 'custom', 'split': trained, 'dir': records}}
        )
        caplog.clear()
        evaluate.open_dataset(settings, card)
        assert [r.getMessage() for r in caplog.records] == (
            [
                f'Evaluating on custom/{evaluated} in {records}, whose images the model was '
                f'trained on: its training records custom/{trained} in {records} were converted '
                f'from {converted}, these from {voc} (--split={evaluated}) (their metadata say '
                f'so). The mAP counts images the model has seen; train on records converted with '
                f'a --split that leaves these images out (VOC2007: --split=trainval, evaluated on '
                f'test).'
            ]
            if converted
            else []
        ), trained
    # A card's provenance is free-form JSON: a name that is no string is no record of ours.
    hostile = settings.card.replace(
        provenance={'dataset': {'name': {'a': 1}, 'split': 'all', 'dir': records}}
    )
    caplog.clear()
    evaluate.open_dataset(settings, hostile)
    assert not caplog.records
    # trainval holds train's ids: a model trained on trainval evaluated on train.
    settings = dataclasses.replace(_settings(data), dataset_split_name='train', dataset_dir=records)
    card = settings.card.replace(
        provenance={'dataset': {'name': 'custom', 'split': 'tv', 'dir': records}}
    )
    caplog.clear()
    evaluate.open_dataset(settings, card)
    assert [r.getMessage() for r in caplog.records][0].startswith(
        f'Evaluating on custom/train in {records}, whose images the model was trained on: its '
        f'training records custom/tv in {records} were converted from {voc} (--split=trainval), '
        f'these from {voc} (--split=train)'
    )


def _fetched_batch():
    """What `_Metrics.add_batch` gets of a batch of two images (a.jpg, b.jpg), relative boxes."""
    return dict(
        filename=np.array([b'a.jpg', b'b.jpg']),
        image_id=np.array([-1, -1]),
        shape=np.array([[100, 200, 3], [50, 80, 3]]),
        num_gt=np.array([1, 0]),
        gt_bboxes=np.array([[[0.1, 0.1, 0.5, 0.5]], [[0.0, 0.0, 0.0, 0.0]]]),
        gt_labels=np.array([[1], [0]]),
        gt_difficult=np.zeros((2, 1), np.int64),
        gt_crowd=np.zeros((2, 1), np.int64),
        num_detections=np.array([2, 1]),
        boxes=np.array(
            [
                [[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.6, 0.9], [0.0, 0.0, 0.0, 0.0]],
                [[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            ],
            np.float32,
        ),
        scores=np.array([[0.9, 0.4, 0.0], [0.7, 0.0, 0.0]], np.float32),
        labels=np.array([[1, 2, 0], [2, 0, 0]], np.int64),
    )


def test_metrics_check_each_batchs_detections_once(tmp_path, monkeypatch):
    """The VOC evaluator checks a batch's detections and the results writer takes them as it
    checked them (it checked them a second time: ~0.02 ms an image), writing what its own check
    would have. Bad detections: the evaluator's message (the image, the field, what it must
    hold)."""
    settings = types.SimpleNamespace(
        metrics=('voc07',),
        matching_threshold=0.5,
        iou_rule='>=',
        dataset_split_name='test',
        remove_difficult=True,
    )
    names = {1: 'cat', 2: 'dog'}
    checks, detections = [], voc_metrics._PaddedRows.detections

    def counted(rows, *args, **kwargs):
        checks.append(rows.context)
        return detections(rows, *args, **kwargs)

    monkeypatch.setattr(voc_metrics._PaddedRows, 'detections', counted)
    os.makedirs(tmp_path / 'eval')
    metrics = evaluate._Metrics(settings, names, None, str(tmp_path / 'eval'))
    out = _fetched_batch()
    metrics.add_batch(out)
    metrics.close()
    assert checks == ['VOCEvaluator.add_batch']
    os.makedirs(tmp_path / 'writer')
    with voc_metrics.VOCResultsWriter(str(tmp_path / 'writer'), 'test', names) as writer:
        det = (out['boxes'], out['scores'], out['labels'], out['num_detections'])
        writer.add_batch(['a', 'b'], *det, out['shape'][:, :2])
    assert sorted(os.listdir(tmp_path / 'eval')) == sorted(os.listdir(tmp_path / 'writer'))
    for name in os.listdir(tmp_path / 'writer'):
        assert (tmp_path / 'eval' / name).read_text() == (tmp_path / 'writer' / name).read_text()
    assert (tmp_path / 'eval' / 'comp4_det_test_dog.txt').read_text().count('\n') == 2

    bad = {'scores': (1, 0, np.nan), 'labels': (0, 1, 7), 'boxes': (1, 0, np.inf)}
    messages = {
        'scores': 'det_scores row 0 must hold finite numbers, got nan.',
        'labels': 'det_labels has labels [7] that are not in class_names (known labels: '
        '[1, 2]; 0 is background and never evaluated).',
        'boxes': 'det_boxes row 0 must hold finite numbers, got [inf, inf, inf, inf].',
    }
    for field, (image, row, value) in bad.items():
        os.makedirs(tmp_path / field)
        metrics = evaluate._Metrics(settings, names, None, str(tmp_path / field))
        out = _fetched_batch()
        out[field][image, row] = value
        with pytest.raises(ValueError) as err:
            metrics.add_batch(out)
        metrics.abort()
        key = 'ab'[image]
        assert str(err.value) == f"VOCEvaluator.add_batch(image_id='{key}'): {messages[field]}"
        assert os.listdir(tmp_path / field) == []


def test_two_records_of_one_image_are_named(tmp_path):
    """Two records with one file stem (a split list naming an id twice, two folders' IMG_001
    converted together) stop a VOC evaluation naming both records, the image and what to do: it
    failed in the VOC evaluator ("VOCEvaluator.add_batch(image_id='a'): this image was already
    added"). COCO alone numbers the two apart and evaluates both (the devkit files it writes
    none of). The second batch repeats the first's 'a'."""
    settings = types.SimpleNamespace(
        metrics=('voc07', 'coco'),
        matching_threshold=0.5,
        iou_rule='>=',
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir='/data/records',
        remove_difficult=True,
    )
    for metrics_names in (('voc07', 'coco'), ('coco',)):
        folder = tmp_path / '_'.join(metrics_names)
        os.makedirs(folder)
        settings.metrics = metrics_names
        metrics = evaluate._Metrics(settings, {1: 'cat', 2: 'dog'}, {1: 1, 2: 2}, str(folder))
        first, again = _fetched_batch(), _fetched_batch()
        first['coco_annotations'] = again['coco_annotations'] = np.array([b'', b''])
        metrics.add_batch(first)
        again['filename'] = np.array([b'c.jpg', b'a.png'])
        if metrics_names == ('coco',):
            metrics.add_batch(again)
            ids = [image['id'] for image in metrics.coco.ground_truth()['images']]
            assert len(set(ids)) == 4, ids
            metrics.abort()
            continue
        with pytest.raises(ValueError) as err:
            metrics.add_batch(again)
        metrics.abort()
        assert str(err.value) == (
            "/data/records: records 1 and 4 of custom/test are both image 'a' (file name "
            "'a.png'); the results files name each image once, so nothing was written. A split "
            'list that names an id twice, or folders whose images share names converted into '
            'one record set, give such records: convert again, the folders into separate record '
            'sets or with their images renamed.'
        )
