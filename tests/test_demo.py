"""The main job in a reduced form (tiny dataset, few steps) goes through every stage, and each
stage's outputs exist and are sane."""
import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(work_dir, *extra):
    return subprocess.run(
        [sys.executable, 'run_demo.py', '--work_dir', str(work_dir), '--num_images', '24',
         '--steps', '4', '--batch_size', '2', '--depth_multiplier', '0.25',
         '--num_detect_images', '2', *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=400)


def test_reduced_main_job_runs_every_stage(tmp_path):
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # TensorFlow's start-up chatter is filtered; the stages and the training log are shown.
    assert 'oneDNN custom operations' not in out and 'cuInit' not in out
    for stage in ('1/6 dataset', '2/6 tfrecords', '3/6 train', '4/6 evaluate', '5/6 export',
                  '6/6 detect', 'VOC07 mAP'):
        assert stage in out
    assert 'step 4:' in out
    results = json.load(open(tmp_path / 'eval' / 'results.json'))
    assert results['global_step'] == 4
    for metric in ('voc07', 'voc12'):
        assert 0. <= results['metrics'][metric] <= 1.
    with tf.io.gfile.GFile(str(tmp_path / 'export' / 'frozen_graph.pb'), 'rb') as f:
        graph_def = tf.compat.v1.GraphDef.FromString(f.read())
    assert any(node.op == 'CombinedNonMaxSuppression' for node in graph_def.node)
    interpreter = tf.lite.Interpreter(str(tmp_path / 'export' / 'model_float.tflite'))
    interpreter.allocate_tensors()
    pngs = glob.glob(str(tmp_path / 'detections' / '*_det.png'))
    assert len(pngs) == 2
    for png in pngs:
        image = cv2.imread(png)
        assert image is not None and image.ndim == 3 and image.size > 0
    detections = json.load(open(tmp_path / 'detections' / 'detections.json'))
    assert len(detections['images']) == 2

    # A second run reuses everything and says so.
    again = run_demo(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    for stage in ('dataset: reusing', 'tfrecords: reusing', 'train: reusing', 'evaluate: reusing',
                  'export: reusing'):
        assert stage in again.stdout
    assert np.isclose(json.load(open(tmp_path / 'eval' / 'results.json'))['metrics']['voc07'],
                      results['metrics']['voc07'])
