"""detect_ssd_network.py and export_ssd_network.py end to end: a folder with a corrupt file, a
video, a frozen graph exported by the script; JSON pixel boxes against the graph's relative ones."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from deployment import inference
from tests import data_fixtures
from tests import inference_fixtures as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [(120, 160), (200, 150), (97, 301)]
MODEL_FLAGS = ['--model_name=ssd_300_mobilenet', '--depth_multiplier=0.25',
               f'--num_classes={fx.NUM_CLASSES}']


def run_script(script, *args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('detect')
    spec = fx.small_spec(select_threshold=0.3, top_k=50, keep_top_k=20)
    prefix = fx.write_checkpoint(spec, str(root / 'ckpt'))
    folder = root / 'images'
    images = fx.random_images(11, SIZES)
    for i, (image, ext) in enumerate(zip(images, ('.jpg', '.png', '.png'))):
        data_fixtures.write_image(str(folder / f'img{i}{ext}'), image, ext)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    labels = root / 'labels.txt'
    labels.write_text('\n'.join(fx.synthetic.CLASSES) + '\n')
    video = str(root / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5., (160, 120))
    for frame in fx.random_images(12, [(120, 160)] * 4):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = root / 'out'
    proc = run_script('detect_ssd_network.py', f'--checkpoint_path={prefix}', *MODEL_FLAGS,
                      f'--labels_file={labels}', f'--input={folder},{video}',
                      f'--output_dir={out}', '--batch_size=2', '--select_threshold=0.3',
                      '--top_k=50', '--keep_top_k=20')
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / 'detections.json').read_text())
    return dict(spec=spec, prefix=prefix, folder=folder, labels=labels, proc=proc, out=out,
                result=result, root=root)


def test_corrupt_file_is_reported_and_skipped(setup):
    proc, result = setup['proc'], setup['result']
    broken = str(setup['folder'] / 'broken.jpg')
    assert f'skipped {broken}' in proc.stdout
    assert [f['file'] for f in result['failures']] == [broken]
    assert [os.path.basename(i['file']) for i in result['images']] == ['img0.jpg', 'img1.png',
                                                                      'img2.png']
    assert result['num_processed'] == 3 + 4
    assert 'images/s' in proc.stdout and result['images_per_second'] > 0


def test_json_pixel_boxes_are_graph_boxes_times_image_size(setup):
    """Reference: the checkpoint graph on each image alone (so batching with padding must not
    change anything), relative boxes scaled by the decoded file's size."""
    spec = setup['spec']
    num_boxes = 0
    with inference.Detector.from_checkpoint(spec, setup['prefix']) as detector:
        for entry in setup['result']['images']:
            image = inference.load_image_rgb(entry['file'])
            assert (entry['height'], entry['width']) == image.shape[:2]
            want = detector.detect([image])[0]
            rows = entry['detections']
            assert len(rows) == len(want['scores']) > 0
            num_boxes += len(rows)
            h, w = image.shape[:2]
            for row, box, score, label in zip(rows, want['boxes'], want['scores'],
                                              want['classes']):
                np.testing.assert_allclose([row['ymin'], row['xmin'], row['ymax'], row['xmax']],
                                           box * [h, w, h, w], atol=1e-3)
                assert row['score'] == pytest.approx(float(score), abs=1e-5)
                assert row['label'] == fx.synthetic.CLASSES[label - 1]
            drawn = cv2.imread(entry['output'])
            assert drawn.shape == image.shape
            assert np.abs(drawn.astype(int) - image[..., ::-1]).max() > 100  # Boxes were drawn.
    assert num_boxes > 3


def test_video_frames(setup):
    [video] = setup['result']['videos']
    assert video['num_frames'] == 4 and len(video['frames']) == 4
    capture = cv2.VideoCapture(video['output'])
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 4
    for frame in video['frames']:
        for row in frame['detections']:
            assert row['label'] in fx.synthetic.CLASSES and row['score'] >= 0.3


def test_exported_frozen_graph_gives_the_same_json(setup):
    export_dir = setup['root'] / 'export'
    proc = run_script('export_ssd_network.py', f'--checkpoint_path={setup["prefix"]}.index',
                      *MODEL_FLAGS, f'--labels_file={setup["labels"]}', '--formats=frozen_graph',
                      f'--output_dir={export_dir}', '--select_threshold=0.3', '--top_k=50',
                      '--keep_top_k=20')
    assert proc.returncode == 0, proc.stderr
    out = setup['root'] / 'out_frozen'
    proc = run_script('detect_ssd_network.py', f'--frozen_graph={export_dir}/frozen_graph.pb',
                      f'--input={setup["folder"]}/*.png', f'--output_dir={out}', '--batch_size=3')
    assert proc.returncode == 0, proc.stderr
    with open(out / 'detections.json') as f:
        got = json.load(f)['images']
    want = [i for i in setup['result']['images'] if i['file'].endswith('.png')]
    assert [i['file'] for i in got] == [i['file'] for i in want]
    for g, w in zip(got, want):
        assert len(g['detections']) == len(w['detections'])
        for a, b in zip(g['detections'], w['detections']):
            assert a['label'] == b['label']
            for key in ('score', 'xmin', 'ymin', 'xmax', 'ymax'):
                assert a[key] == pytest.approx(b[key], abs=1e-3)


def test_nothing_readable_exits_with_error(tmp_path, setup):
    (tmp_path / 'a.jpg').write_bytes(b'')
    proc = run_script('detect_ssd_network.py', f'--checkpoint_path={setup["prefix"]}', *MODEL_FLAGS,
                      f'--input={tmp_path}/a.jpg,{tmp_path}/missing.png',
                      f'--output_dir={tmp_path}/out')
    assert proc.returncode == 1
    assert 'no image processed (2 failed)' in proc.stderr
    assert 'a.jpg' in proc.stderr and 'missing.png' in proc.stderr
    with open(tmp_path / 'out' / 'detections.json') as f:
        assert len(json.load(f)['failures']) == 2
