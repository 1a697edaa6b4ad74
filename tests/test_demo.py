"""The main job in a reduced form (tiny dataset, few steps) goes through every stage; each stage's
outputs agree with an independent reading of the others: the evaluation with the dataset's XML
and a devkit transcription run on the written results files, the TFLite model with the frozen
graph, the detections and annotated images with the frozen graph run here; a second run reuses
every stage without rewriting its files."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.inference_fixtures import FROZEN_GRAPH_OUTPUTS, run_frozen_graph
from tests.test_metrics_voc import _reference_voc as reference_voc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(work_dir, *extra, num_detect_images=2):
    return subprocess.run(
        [
            sys.executable,
            'run_demo.py',
            '--work_dir',
            str(work_dir),
            '--num_images',
            '24',
            '--steps',
            '4',
            '--batch_size',
            '2',
            '--depth_multiplier',
            '0.25',
            '--num_detect_images',
            str(num_detect_images),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )


def read_test_split(voc_dir):
    """{image id: [(class name, difficult, [ymin, xmin, ymax, xmax] devkit pixels)]} of the test
    split, read from the VOC XML."""
    with open(os.path.join(voc_dir, 'ImageSets', 'Main', 'test.txt')) as f:
        ids = f.read().split()
    objects = {}
    for image_id in ids:
        root = ET.parse(os.path.join(voc_dir, 'Annotations', image_id + '.xml')).getroot()
        objects[image_id] = [
            (
                o.findtext('name'),
                o.findtext('difficult') == '1',
                [float(o.findtext('bndbox/' + k)) for k in ('ymin', 'xmin', 'ymax', 'xmax')],
            )
            for o in root.findall('object')
        ]
    return objects


def read_results_files(eval_dir, class_names):
    """{image id: [(class name, score, [ymin, xmin, ymax, xmax])]} from comp4_det_test_<class>.txt
    (devkit lines `id score xmin ymin xmax ymax`)."""
    detections = {}
    for name in class_names:
        with open(os.path.join(eval_dir, 'comp4_det_test_%s.txt' % name)) as f:
            for line in f:
                image_id, score, xmin, ymin, xmax, ymax = line.split()
                detections.setdefault(image_id, []).append(
                    (name, float(score), [float(ymin), float(xmin), float(ymax), float(xmax)])
                )
    return detections


def run_tflite(path, image, names):
    interpreter = tf.lite.Interpreter(path)
    index = interpreter.get_input_details()[0]['index']
    interpreter.resize_tensor_input(index, (1,) + image.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image[None])
    interpreter.invoke()
    outputs = {d['name']: d['index'] for d in interpreter.get_output_details()}
    return {n: interpreter.get_tensor(outputs[n]) for n in names}


def test_reduced_main_job_runs_every_stage(tmp_path):
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # TensorFlow's start-up chatter is filtered; the stages and the training log are shown.
    assert 'oneDNN custom operations' not in out and 'cuInit' not in out
    for stage in (
        '1/6 dataset',
        '2/6 tfrecords',
        '3/6 train',
        '4/6 evaluate',
        '5/6 export',
        '6/6 detect',
        'VOC07 mAP',
    ):
        assert stage in out
    # The training log: step lines, one line per checkpoint, TF's session chatter off.
    assert 'step 4/4 (epoch ' in out and 'checkpoint saved: ' in out
    assert 'training finished: 4 steps' in out
    assert 'Calling checkpoint listeners' not in out and 'Graph was finalized' not in out
    curve = tmp_path / 'training_curve.png'
    assert f'curve       {curve}' in out and cv2.imread(str(curve)) is not None
    results = json.load(open(tmp_path / 'eval' / 'results.json'))
    assert results['global_step'] == 4
    assert (
        'VOC07 mAP %.3f, VOC12 mAP %.3f'
        % (results['metrics']['voc07'], results['metrics']['voc12'])
        in out
    )

    # Evaluation: the test split's objects as its XML has them, and the APs of the devkit
    # transcription (test_metrics_voc) run on the written results files.
    truth = read_test_split(str(tmp_path / 'synthetic'))
    assert results['num_images'] == len(truth) == 6
    class_names = [row['name'] for row in results['classes']]
    written = read_results_files(str(tmp_path / 'eval'), class_names)
    assert written and set(written) <= set(truth)
    # Image by image in the files' order (the devkit's order for equal scores), then the rest.
    order = list(dict.fromkeys(written)) + [i for i in truth if i not in written]
    images = [
        {
            'image_id': i,
            'gt_labels': [o[0] for o in truth[i]],
            'gt_boxes': [o[2] for o in truth[i]],
            'gt_difficult': [o[1] for o in truth[i]],
            'det_labels': [d[0] for d in written.get(i, [])],
            'det_scores': [d[1] for d in written.get(i, [])],
            'det_boxes': [d[2] for d in written.get(i, [])],
        }
        for i in order
    ]
    aps = {'voc07': [], 'voc12': []}
    for row in results['classes']:
        objects = [o for i in truth for o in truth[i] if o[0] == row['name']]
        assert (row['num_gt'], row['num_difficult']) == (
            len(objects),
            sum(o[1] for o in objects),
        ), row
        ap07, ap12, _, _ = reference_voc(images, row['name'], 0.5, '>=')
        assert row['ap_voc07'] == (None if ap07 is None else pytest.approx(ap07, abs=1e-9))
        assert row['ap_voc12'] == (None if ap12 is None else pytest.approx(ap12, abs=1e-9))
        if ap07 is not None:
            aps['voc07'].append(ap07)
            aps['voc12'].append(ap12)
    for metric, values in aps.items():
        assert results['metrics'][metric] == pytest.approx(np.mean(values), abs=1e-9), metric

    # Export and detection, on the two test images the demo detected on.
    export_dir = tmp_path / 'export'
    with tf.io.gfile.GFile(str(export_dir / 'frozen_graph.pb'), 'rb') as f:
        graph_def = tf.compat.v1.GraphDef.FromString(f.read())
    assert any(node.op == 'CombinedNonMaxSuppression' for node in graph_def.node)
    detections = json.load(open(tmp_path / 'detections' / 'detections.json'))
    assert [os.path.basename(e['file']) for e in detections['images']] == [
        i + '.png' for i in list(truth)[:2]
    ]
    assert len(glob.glob(str(tmp_path / 'detections' / '*_det.png'))) == 2
    names = FROZEN_GRAPH_OUTPUTS
    for entry in detections['images']:
        source = cv2.imread(entry['file'])
        image = cv2.cvtColor(source, cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        assert (entry['height'], entry['width']) == (height, width)
        frozen = run_frozen_graph(str(export_dir / 'frozen_graph.pb'), image, names)
        # After 4 steps the outputs barely depend on the image (measured: a 2 % change of the
        # TFLite graph's input moves them by < 1e-7), so this checks the exports' plumbing;
        # test_export_models checks the numbers of a model that sees its input.
        lite = run_tflite(str(export_dir / 'model_float.tflite'), image, names[:2])
        for name in names[:2]:
            np.testing.assert_allclose(lite[name], frozen[name], atol=1e-4, err_msg=name)
        # detect_ssd_network.py ran this frozen graph with --select_threshold=0.5: its rows are
        # the graph's detections scoring >= 0.5, in pixels of the image.
        keep = [
            k for k in range(frozen['num_detections'][0]) if frozen['detection_scores'][0, k] >= 0.5
        ]
        rows = entry['detections']
        assert len(rows) == len(keep), entry['file']
        for row, k in zip(rows, keep):
            assert row['label_id'] == frozen['detection_classes'][0, k]
            assert row['label'] == class_names[row['label_id'] - 1]
            assert row['score'] == pytest.approx(frozen['detection_scores'][0, k], abs=1e-5)
            ymin, xmin, ymax, xmax = np.clip(frozen['detection_boxes'][0, k], 0, 1)
            np.testing.assert_allclose(
                [row['xmin'], row['ymin'], row['xmax'], row['ymax']],
                [xmin * width, ymin * height, xmax * width, ymax * height],
                atol=1e-3,
            )
        # The annotated image is the input with the boxes drawn over it (nothing drawn: equal).
        drawn = cv2.imread(entry['output'])
        assert drawn.shape == source.shape
        same = (drawn == source).all(axis=-1).mean()
        assert (0.5 < same < 1.0) if rows else same == 1.0, (entry['output'], same)

    # A second run reuses everything, says so, and rewrites nothing.
    stages = ('train', 'eval', 'export', 'tfrecords', 'synthetic')
    files = [
        p
        for stage in stages
        for p in glob.glob(str(tmp_path / stage / '**' / '*'), recursive=True)
        if os.path.isfile(p)
    ]
    mtimes = {p: os.stat(p).st_mtime_ns for p in files}
    again = run_demo(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    for stage in (
        'dataset: reusing',
        'tfrecords: reusing',
        'train: reusing',
        'evaluate: reusing',
        'export: reusing',
    ):
        assert stage in again.stdout
    assert {p: os.stat(p).st_mtime_ns for p in files} == mtimes
    assert json.load(open(tmp_path / 'eval' / 'results.json')) == results

    # A changed setting redoes its stage (and what depends on it), saying why; the rest is reused.
    third = run_demo(tmp_path, num_detect_images=1)
    assert third.returncode == 0, third.stdout[-3000:]
    assert 'export: reusing' in third.stdout and 'detect: 1 test images' in third.stdout
    assert '(settings changed: num_detect_images 2 -> 1)' in third.stdout
    assert len(glob.glob(str(tmp_path / 'detections' / '*_det.png'))) == 1


def test_sigterm_ends_the_demo_and_its_stage_with_one_line(tmp_path):
    """A scheduler's SIGTERM to the demo alone killed it at once, with no line, and left the
    stage's script running on its own; now the script gets it too, and the demo ends by the
    signal after its Ctrl-C line."""
    from tests.conftest import process_running

    demo = subprocess.Popen(
        [sys.executable, 'run_demo.py', '--work_dir', str(tmp_path / 'work'), '--num_images', '24'],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line.rstrip('\n'))
            if '2/6 tfrecords: converting the train split' in line:
                break
        children = f'/proc/{demo.pid}/task/{demo.pid}/children'
        deadline = time.time() + 60
        while not open(children).read().split():
            assert time.time() < deadline and demo.poll() is None, lines
            time.sleep(0.01)
        (stage,) = [int(pid) for pid in open(children).read().split()]
        demo.send_signal(signal.SIGTERM)
        lines += demo.stdout.read().splitlines()
        assert demo.wait(timeout=120) == -signal.SIGTERM
    finally:
        if demo.poll() is None:
            demo.kill()
    assert not process_running(stage)
    # The converter was stopped (it starts for seconds): without the signal it went on to write
    # the split while the demo waited for it.
    assert not glob.glob(str(tmp_path / 'work' / '*' / 'train_*'))
    assert re.fullmatch(
        r'\[demo \d\d:\d\d:\d\d\] terminated \(SIGTERM\) during 2/6 tfrecords; kept: .*; run the '
        r'same command to resume',
        lines[-1],
    ), lines[-5:]
