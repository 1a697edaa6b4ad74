"""detect_ssd_network.py and export_ssd_network.py end to end: a folder with a corrupt file, a
video, a frozen graph, a SavedModel and TFLite models exported by the script; JSON pixel boxes
against the graph's relative ones, each exported source against the frozen graph's JSON."""

import json
import os
import re
import shutil
import signal

import cv2
import numpy as np
import pytest

from inference import detection
from tests import data_fixtures
from tests.conftest import ROOT, interrupt_when, run_python, run_script
from tests import inference_fixtures as fx

SIZES = [(120, 160), (200, 150), (97, 301)]
THRESHOLDS = ['--select_threshold=0.3', '--top_k=50', '--keep_top_k=20']
TFLITE_TOL = 1e-4
MODEL_FLAGS = [
    '--model_name=ssd_300_mobilenet',
    '--depth_multiplier=0.25',
    f'--num_classes={fx.NUM_CLASSES}',
]
# What TensorFlow would print around an export or a SavedModel load and the scripts must not:
# v1 deprecation notices, one restore line per format, the SavedModel builder's and TFLite
# converter's INFO lines, Grappler's E-level complaint about the variables' init ops.
TF_CHATTER = re.compile(
    r'deprecated|Restoring parameters|No assets to|SavedModel written to|Using experimental '
    r'converter|Init node'
)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The checkpoint, its labels and the runs' inputs: a folder of three images and a corrupt
    file, a 4-frame video, two images of the net's input size."""
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
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (160, 120))
    for frame in fx.random_images(12, [(120, 160)] * 4):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    square = root / 'square'  # The net's input size, for the fixed-size export.
    for i, image in enumerate(fx.random_images(13, [(300, 300)] * 2)):
        data_fixtures.write_image(str(square / f'sq{i}.png'), image, '.png')
    return dict(
        spec=spec,
        prefix=prefix,
        folder=folder,
        labels=labels,
        root=root,
        video=video,
        square=square,
    )


@pytest.fixture(scope='module')
def checkpoint_run(setup):
    """The checkpoint on the image folder and the video: (process, detections.json)."""
    out = setup['root'] / 'out'
    proc = run_script(
        'detect_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        *MODEL_FLAGS,
        f'--labels_file={setup["labels"]}',
        f'--input={setup["folder"]},{setup["video"]}',
        f'--output_dir={out}',
        '--batch_size=2',
        *THRESHOLDS,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((out / 'detections.json').read_text())


@pytest.fixture(scope='module')
def reference(setup):
    """The checkpoint's graph in this process, which the script's JSON is checked against."""
    with detection.Detector.from_checkpoint(setup['spec'], setup['prefix']) as detector:
        yield detector


def export(setup, output_dir, *args):
    """Runs export_ssd_network.py on the checkpoint (given by its .index) into `output_dir`."""
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}.index',
        *MODEL_FLAGS,
        f'--labels_file={setup["labels"]}',
        *THRESHOLDS,
        f'--output_dir={output_dir}',
        *args,
    )
    assert proc.returncode == 0, proc.stderr
    assert f'exporting {setup["prefix"]} (step 0): ' in proc.stdout
    assert not TF_CHATTER.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope='module')
def export_any(setup):
    """Frozen graph, SavedModel and TFLite float (batch 1), any image size."""
    output_dir = setup['root'] / 'export'
    export(setup, output_dir, '--formats=frozen_graph,saved_model,tflite_float')
    return output_dir


@pytest.fixture(scope='module')
def export_fixed(setup):
    """TFLite float and int8 with a static batch of 2 and the net's input size only (int8
    calibrated on a synthetic split)."""
    output_dir = setup['root'] / 'export_fixed'
    records = fx.write_synthetic_split(str(setup['root'] / 'synthetic'), 16)
    proc = export(
        setup,
        output_dir,
        '--formats=tflite_float,tflite_int8',
        '--fixed_size',
        '--tflite_batch_size=2',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={records}',
        '--num_calibration_images=50',  # more than the split's 4: said, all 4 used
    )
    assert 'calibrating tflite_int8 on 4 images: all the split has' in proc.stdout
    # The synthetic split is named test: the usual evaluation split.
    assert (
        'note: calibrating tflite_int8 on split test, which int8 models are usually '
        'evaluated on: calibrate on training images (--dataset_split_name=train) to keep '
        'it unseen'
    ) in proc.stdout
    return output_dir


def detect(setup, name, source, inputs, *args):
    """Runs detect_ssd_network.py into `<root>/<name>`; returns (process, detections.json)."""
    out = setup['root'] / name
    proc = run_script(
        'detect_ssd_network.py', source, f'--input={inputs}', f'--output_dir={out}', *args
    )
    assert proc.returncode == 0, proc.stderr
    with open(out / 'detections.json') as f:
        return proc, json.load(f)


@pytest.fixture(scope='module')
def frozen_run(setup, export_any):
    """The frozen graph on two PNGs of different sizes, the square images and the video."""
    inputs = f'{setup["folder"]}/*.png,{setup["square"]},{setup["video"]}'
    return detect(
        setup,
        'out_frozen',
        f'--frozen_graph={export_any}/frozen_graph.pb',
        inputs,
        '--batch_size=3',
        '--select_threshold=0.3',
    )[1]


@pytest.fixture(scope='module')
def saved_model_run(setup, export_any):
    """The SavedModel on the frozen run's images: (process, detections.json)."""
    return detect(
        setup,
        'out_saved_model',
        f'--saved_model_dir={export_any}/saved_model',
        f'{setup["folder"]}/*.png,{setup["square"]}',
        '--batch_size=3',
        '--select_threshold=0.3',
    )


@pytest.fixture(scope='module')
def tflite_run(setup, export_any):
    """The batch-1 TFLite float model on the frozen run's inputs: (process, detections.json)."""
    return detect(
        setup,
        'out_tflite',
        f'--tflite_model={export_any}/model_float.tflite',
        f'{setup["folder"]}/*.png,{setup["square"]},{setup["video"]}',
        '--batch_size=3',
        '--select_threshold=0.3',
    )


@pytest.fixture(scope='module')
def fixed_run(setup, export_fixed):
    """The fixed-size TFLite float model (batch 2) on an image of another size, then the square
    images, one per batch: (process, detections.json)."""
    return detect(
        setup,
        'out_tflite_b2',
        f'--tflite_model={export_fixed}/model_float.tflite',
        f'{setup["folder"]}/img1.png,{setup["square"]}',
        '--batch_size=1',
        '--select_threshold=0.3',
    )


@pytest.fixture(scope='module')
def frozen_graph(export_any):
    """The model flag of the runs that check what the script reads and writes, not the model's
    numbers: the frozen graph loads in about a second, the checkpoint's graph in several."""
    return [f'--frozen_graph={export_any}/frozen_graph.pb']


def relative_rows(rows, height, width):
    """detections.json rows -> labels, scores `[n]`, boxes `[n, 4]` relative [ymin, xmin, ymax,
    xmax] (the pixel coordinates divided by the image size)."""
    boxes = np.array(
        [
            [r['ymin'] / height, r['xmin'] / width, r['ymax'] / height, r['xmax'] / width]
            for r in rows
        ]
    ).reshape(-1, 4)
    return [r['label'] for r in rows], np.array([r['score'] for r in rows]), boxes


def assert_same_rows(got, want, height, width, atol):
    """The same detections: labels equal, scores and relative boxes within `atol`.

    The random-weight model gives many scores a few 1e-6 apart (TF and TFLite differ by ~3e-7),
    so rows are matched in any order, and a row within `atol` of the lowest kept score may be
    replaced by another (a near tie at the keep_top_k cut-off).
    """
    got_labels, got_scores, got_boxes = relative_rows(got, height, width)
    want_labels, want_scores, want_boxes = relative_rows(want, height, width)
    assert len(got_labels) == len(want_labels)
    cutoff = min(got_scores.min(initial=1.0), want_scores.min(initial=1.0)) + atol
    unmatched = list(range(len(want_labels)))
    for label, score, box in zip(got_labels, got_scores, got_boxes):
        match = next(
            (
                w
                for w in unmatched
                if want_labels[w] == label
                and abs(want_scores[w] - score) <= atol
                and np.abs(want_boxes[w] - box).max() <= atol
            ),
            None,
        )
        if match is None:
            assert score <= cutoff, f'{label} {score} {box} not in {want}'
        else:
            unmatched.remove(match)
    assert all(want_scores[w] <= cutoff for w in unmatched), [want[w] for w in unmatched]


def assert_same_images(got, want, atol):
    """Image entries of two detections.json, matched by file: same size and detections; returns
    the number of detections compared."""
    want = {entry['file']: entry for entry in want}
    count = 0
    for entry in got:
        ref = want[entry['file']]
        assert (entry['height'], entry['width']) == (ref['height'], ref['width'])
        assert_same_rows(entry['detections'], ref['detections'], ref['height'], ref['width'], atol)
        count += len(ref['detections'])
    return count


def test_corrupt_file_is_reported_and_skipped(setup, checkpoint_run):
    proc, result = checkpoint_run
    broken = str(setup['folder'] / 'broken.jpg')
    assert f'skipped {broken}' in proc.stdout
    assert [f['file'] for f in result['failures']] == [broken]
    assert [os.path.basename(i['file']) for i in result['images']] == [
        'img0.jpg',
        'img1.png',
        'img2.png',
    ]
    assert result['num_processed'] == 3 + 4
    assert 'images/s' in proc.stdout and result['images_per_second'] > 0


def test_the_run_names_what_detects_once(
    setup, checkpoint_run, export_any, saved_model_run, tflite_run
):
    """The script's own line names the restored checkpoint (a prefix given by its .index too)
    or the exported model, its card and exported step; TF's restore line, which named a
    SavedModel's variables/variables file, is not printed."""
    proc = checkpoint_run[0]
    assert f'checkpoint {setup["prefix"]} (step 0)\n' in proc.stdout
    assert 'Restoring parameters' not in proc.stdout + proc.stderr
    for (proc, _), path in (
        (saved_model_run, f'{export_any}/saved_model'),
        (tflite_run, f'{export_any}/model_float.tflite'),
    ):
        described = f'model {path}: ssd_300_mobilenet, {len(fx.synthetic.CLASSES)} classes ('
        assert described in proc.stdout and ', exported at step 0\n' in proc.stdout
        # TF's restore line; the TFLite interpreter's notice that it moves to another package.
        assert not TF_CHATTER.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr


def test_json_pixel_boxes_are_graph_boxes_times_image_size(checkpoint_run, reference):
    """Reference: the checkpoint graph on each image alone (so batching with padding must not
    change anything), relative boxes clipped to the image and scaled by the decoded file's size
    (boxes past the image are among them: clipping is tested)."""
    num_boxes = num_outside = 0
    for entry in checkpoint_run[1]['images']:
        image = detection.load_image_rgb(entry['file'])
        assert (entry['height'], entry['width']) == image.shape[:2]
        want = reference.detect([image])[0]
        rows = entry['detections']
        assert len(rows) == len(want['scores']) > 0
        num_boxes += len(rows)
        num_outside += int(((want['boxes'] < 0) | (want['boxes'] > 1)).any(axis=1).sum())
        h, w = image.shape[:2]
        for row, box, score, label in zip(rows, want['boxes'], want['scores'], want['classes']):
            np.testing.assert_allclose(
                [row['ymin'], row['xmin'], row['ymax'], row['xmax']],
                np.clip(box, 0, 1) * [h, w, h, w],
                atol=1e-3,
            )
            assert row['score'] == pytest.approx(float(score), abs=1e-5)
            assert row['label'] == fx.synthetic.CLASSES[label - 1]
        drawn = cv2.imread(entry['output'])
        assert drawn.shape == image.shape
        assert np.abs(drawn.astype(int) - image[..., ::-1]).max() > 100  # Boxes were drawn.
    assert num_boxes > 3 and num_outside > 0


def test_video_frames(setup, checkpoint_run, reference):
    [video] = checkpoint_run[1]['videos']
    assert video['num_frames'] == 4 and len(video['frames']) == 4
    # What makes its pixel boxes relative without opening the video, as an image's entry.
    assert (video['width'], video['height']) == (160, 120)
    assert video['fps'] == pytest.approx(5.0)
    assert video['container_frames'] == 4
    assert list(video) == [
        'file',
        'output',
        'width',
        'height',
        'fps',
        'num_frames',
        'container_frames',
        'frames',
    ]
    # The first frame's boxes are the graph's relative boxes times that size.
    capture = cv2.VideoCapture(setup['video'])
    ok, bgr = capture.read()
    capture.release()
    assert ok
    [want] = reference.detect([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])
    rows = video['frames'][0]['detections']
    assert len(rows) == len(want['boxes']) > 0
    h, w = video['height'], video['width']
    for row, box in zip(rows, want['boxes']):
        np.testing.assert_allclose(
            [row['ymin'], row['xmin'], row['ymax'], row['xmax']],
            np.clip(box, 0, 1) * [h, w, h, w],  # clipped to the frame
            atol=1e-3,
        )
    capture = cv2.VideoCapture(video['output'])
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 4
    for frame in video['frames']:
        for row in frame['detections']:
            assert row['label'] in fx.synthetic.CLASSES and row['score'] >= 0.3


def test_exported_frozen_graph_gives_the_same_json(setup, checkpoint_run, frozen_run):
    got = [i for i in frozen_run['images'] if i['file'].startswith(str(setup['folder']))]
    want = [i for i in checkpoint_run[1]['images'] if i['file'].endswith('.png')]
    assert [i['file'] for i in got] == [i['file'] for i in want]
    for g, w in zip(got, want):
        assert len(g['detections']) == len(w['detections'])
        for a, b in zip(g['detections'], w['detections']):
            assert a['label'] == b['label']
            for key in ('score', 'xmin', 'ymin', 'xmax', 'ymax'):
                assert a[key] == pytest.approx(b[key], abs=1e-3)


def test_saved_model_gives_the_frozen_graph_json(saved_model_run, frozen_run):
    """The same graph and weights, loaded by TF's v1 loader (whose deprecation notice the script
    must not print)."""
    proc, got = saved_model_run
    assert got['model'] == frozen_run['model']
    assert len(got['images']) == 4
    assert assert_same_images(got['images'], frozen_run['images'], 1e-6) > 3
    assert 'deprecated' not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_tflite_float_gives_the_frozen_graph_json(tflite_run, frozen_run):
    """Batch-1 model; one flush holds images of three sizes (and the video frames)."""
    proc, got = tflite_run
    assert got['model'] == frozen_run['model']
    assert [(i['height'], i['width']) for i in got['images']] == [
        *SIZES[1:],
        (300, 300),
        (300, 300),
    ]
    assert assert_same_images(got['images'], frozen_run['images'], TFLITE_TOL) > 3
    [video], [want_video] = got['videos'], frozen_run['videos']
    assert video['num_frames'] == want_video['num_frames'] == 4
    for frame, want_frame in zip(video['frames'], want_video['frames']):
        assert_same_rows(frame['detections'], want_frame['detections'], 120, 160, TFLITE_TOL)
    # The annotated images come from the same drawing code: equal up to a 1e-4 box shift
    # rounding to another pixel.
    want_outputs = {i['file']: i['output'] for i in frozen_run['images']}
    for entry in got['images']:
        drawn, want = cv2.imread(entry['output']), cv2.imread(want_outputs[entry['file']])
        assert drawn.shape == want.shape
        assert (drawn != want).any(axis=2).mean() < 1e-3
    assert 'processed 8 image(s)/frame(s)' in proc.stdout


def test_tflite_batch_of_two_gives_the_frozen_graph_json(export_fixed, fixed_run, frozen_run):
    """A static batch of 2: each image is run repeated twice, its first result kept."""
    assert detection.TFLiteDetector(str(export_fixed / 'model_float.tflite')).batch_size == 2
    got = fixed_run[1]
    assert len(got['images']) == 2
    assert assert_same_images(got['images'], frozen_run['images'], TFLITE_TOL) > 0


def test_int8_model_writes_decodable_outputs(setup, export_fixed):
    """Reference: the int8 interpreter on each image repeated to its batch of 2, filtered at the
    script's --select_threshold (0.66: above the exported 0.3, and between the int8 model's
    score levels 0.68 and 0.645, so that it removes detections)."""
    model = str(export_fixed / 'model_int8.tflite')
    proc, got = detect(
        setup,
        'out_int8',
        f'--tflite_model={model}',
        str(setup['square']),
        '--select_threshold=0.66',
    )
    assert (
        "detection settings of this run replace the card's: select_threshold 0.3 -> 0.66\n"
    ) in proc.stdout
    assert got['model']['detection']['select_threshold'] == 0.66
    assert detection.TFLiteImageDetector(model).precision == 'int8'
    float_model = str(export_fixed / 'model_float.tflite')
    assert detection.TFLiteImageDetector(float_model).precision == 'float32'
    reference = detection.TFLiteDetector(model)
    kept = removed = 0
    for entry in got['images']:
        image = detection.load_image_rgb(entry['file'])
        drawn = cv2.imread(entry['output'])
        assert drawn.shape == image.shape
        assert np.abs(drawn.astype(int) - image[..., ::-1]).max() > 100  # Boxes were drawn.
        want = reference.detect([image, image])[0]
        keep = want['scores'] >= 0.66
        want_rows = detection.pixel_detections(
            {k: v[keep] for k, v in want.items()}, 300, 300, fx.synthetic.CLASSES
        )
        assert_same_rows(entry['detections'], want_rows, 300, 300, 1e-6)
        kept, removed = kept + keep.sum(), removed + (~keep).sum()
    assert kept > 0 and removed > 0
    assert got['failures'] == [] and got['num_processed'] == 2


def test_fixed_size_tflite_rejects_other_sizes(setup, export_fixed, fixed_run):
    """A batch the model cannot run fails its images, one line each; the run goes on with the
    next batch and writes detections.json (it ended in a traceback)."""
    model = export_fixed / 'model_float.tflite'
    proc, result = fixed_run
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert result['num_processed'] == 2 and [f['file'] for f in result['failures']] == [
        f'{setup["folder"]}/img1.png'
    ]
    assert (
        f'{model} was exported with --fixed_size: it takes 300x300 (height x width) images '
        f'only; got 200x150. '
    ) in result['failures'][0]['error']


def test_a_tflite_runtime_failure_is_one_model_run_error(export_fixed, monkeypatch):
    model = export_fixed / 'model_float.tflite'
    detector = detection.TFLiteDetector(str(model))

    def fail():
        raise RuntimeError('tensorflow/lite/kernels/conv.cc: failed to allocate')

    monkeypatch.setattr(detector.interpreter, 'invoke', fail)
    images = fx.random_images(5, [(300, 300)] * 2)
    with pytest.raises(detection.ModelRunError, match='the TFLite runtime failed on a batch'):
        detector.run(images)


def test_exported_models_log_and_record_the_select_threshold_applied(setup, export_any):
    """An export's output is filtered at this script's default 0.5: detections.json said the
    exported 0.3 and nothing was logged; a percentage (50) filtered everything out silently."""
    proc, got = detect(
        setup,
        'out_frozen_default',
        f'--frozen_graph={export_any}/frozen_graph.pb',
        str(setup['square']),
    )
    assert (
        "detection settings of this run replace the card's: select_threshold 0.3 -> 0.5 "
        "(this script's default)\n"
    ) in proc.stdout
    assert got['model']['detection'] == {
        'select_threshold': 0.5,
        'nms_threshold': 0.45,
        'top_k': 50,
        'keep_top_k': 20,
        'clip': False,
    }
    rows = [row for image in got['images'] for row in image['detections']]
    assert rows and min(row['score'] for row in rows) >= 0.5
    assert 'note: no detection' not in proc.stdout, proc.stdout
    for source in (
        f'--frozen_graph={export_any}/frozen_graph.pb',
        f'--checkpoint_path={setup["prefix"]}',
    ):
        proc = run_script(
            'detect_ssd_network.py',
            source,
            *MODEL_FLAGS,
            f'--input={setup["square"]}',
            f'--output_dir={setup["root"]}/o50',
            '--select_threshold=50',
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            'detect_ssd_network: error: detection setting select_threshold '
            '(--select_threshold) is 50.0, expected a number in [0, 1].'
        )
    assert not os.path.exists(f'{setup["root"]}/o50/detections.json')


def test_a_run_that_detects_nothing_says_so(setup, export_any):
    """A briefly trained model scores below the default 0.5 everywhere: the run printed only
    'processed 1 image(s)' and wrote undrawn images, which read as a broken model or script."""
    proc, got = detect(
        setup,
        'out_frozen_nothing',
        f'--frozen_graph={export_any}/frozen_graph.pb',
        str(setup['square']),
        '--select_threshold=1',
    )
    assert got['images'] and not any(image['detections'] for image in got['images'])
    assert (
        'note: no detection scored above 1 (--select_threshold) in any image: a briefly '
        'trained model scores lower; a lower --select_threshold (e.g. 0.2) shows its weaker '
        'detections\n'
    ) in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    'threshold, suggested', [(0.5, '0.2'), (0.2, '0.1'), (0.05, '0.025'), (0.0, None)]
)
def test_the_no_detection_note_suggests_a_threshold_below_the_one_given(threshold, suggested):
    """After --select_threshold=0.2 the note suggested 'e.g. 0.2'; after 0 nothing is lower."""
    note = detection.no_detection_note(threshold)
    assert note.startswith(
        f'note: no detection scored above {threshold:g} (--select_threshold) in any image'
    )
    if suggested is None:
        assert 'lower' not in note, note
    else:
        assert note.endswith(f'(e.g. {suggested}) shows its weaker detections'), note


def test_an_input_without_images_fails_before_the_model_loads(setup, tmp_path):
    """`--input=voc/Annotations` said only 'no image processed (0 failed)', after loading the
    model."""
    notes = tmp_path / 'Annotations'
    notes.mkdir()
    for i in range(12):
        (notes / f'{i:06d}.xml').write_text('<annotation/>')
    proc = run_script(*_detect_into(_checkpoint(setup), notes, tmp_path / 'out'), timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f'detect_ssd_network: error: --input={notes} holds no image or video file (by '
        f'extension: .jpg .jpeg .png .bmp .gif .webp .tif .tiff .mp4 .avi .mov .mkv .webm .m4v '
        f'.mpg .mpeg; folders are not searched recursively); found 12 .xml files.'
    )
    assert 'checkpoint' not in proc.stdout and not (tmp_path / 'out').exists()


def test_exactly_one_model_source(setup, export_any):
    proc = run_script(
        'detect_ssd_network.py',
        f'--frozen_graph={export_any}/frozen_graph.pb',
        f'--tflite_model={export_any}/model_float.tflite',
        f'--input={setup["folder"]}',
        f'--output_dir={setup["root"]}/o',
    )
    assert proc.returncode == 1
    assert (
        'error: give exactly one of --checkpoint_path, --saved_model_dir, --frozen_graph, '
        '--tflite_model, --openvino_model, --exported_model (got --frozen_graph, --tflite_model)'
    ) in proc.stderr


def test_nothing_readable_exits_with_error(tmp_path, frozen_graph):
    """(A file that does not exist is refused before the model loads:
    tests/test_script_refusals.py.)"""
    (tmp_path / 'a.jpg').write_bytes(b'')
    os.symlink('/dev/zero', tmp_path / 'zero.png')  # read whole, it would never end
    os.mkfifo(tmp_path / 'pipe.mp4')  # OpenCV would block opening it
    proc = run_script(
        *_detect_into(
            frozen_graph,
            f'{tmp_path}/a.jpg,{tmp_path}/zero.png,{tmp_path}/pipe.mp4',
            f'{tmp_path}/out',
        ),
        timeout=120,
    )
    assert proc.returncode == 1
    assert f'no image processed (3 failed), nothing written to {tmp_path}/out:\n' in proc.stderr
    assert 'a.jpg' in proc.stderr
    assert 'zero.png: the image is a character device (through a symlink)' in proc.stderr
    assert 'pipe.mp4: the video is a FIFO (named pipe), not a regular file' in proc.stderr
    # No detections.json without a detection: --output_dir is not left behind.
    assert not (tmp_path / 'out').exists()


def test_a_detections_json_that_is_not_a_file_is_refused(setup, tmp_path):
    """A FIFO named detections.json in --output_dir: reading it (to know an earlier run's
    outputs) blocked forever; now refused at once, nothing written."""
    out = tmp_path / 'out'
    out.mkdir()
    os.mkfifo(out / 'detections.json')
    proc = run_script(*_detect_into(_checkpoint(setup), setup['square'], out), timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f'{out}/detections.json exists and is not the detections.json of an earlier run' in (
        proc.stderr
    )
    assert 'FIFO' in proc.stderr and os.listdir(out) == ['detections.json']


def test_output_dir_that_is_a_file_is_one_line(setup, tmp_path):
    """It was a FileExistsError traceback, after the model had loaded."""
    out = tmp_path / 'out'
    out.write_text('mine')
    proc = run_script(*_detect_into(_checkpoint(setup), setup['square'], out), timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f'detect_ssd_network: error: --output_dir {out} is not a folder; choose a folder.'
    )
    assert out.read_text() == 'mine'


def test_bfloat16_checkpoint_run(setup, checkpoint_run, tmp_path):
    """--compute_dtype reaches the graph (its numbers are checked in test_export_models)."""
    proc = run_script(
        'detect_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        *MODEL_FLAGS,
        f'--input={setup["square"]}',
        f'--output_dir={tmp_path}',
        '--compute_dtype=bfloat16',
        *THRESHOLDS,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / 'detections.json').read_text())
    assert result['model']['compute_dtype'] == 'bfloat16'
    assert checkpoint_run[1]['model']['compute_dtype'] == 'float32'
    assert len(result['images']) == 2 and all(i['detections'] for i in result['images'])


def test_videos_that_cannot_be_written_or_are_too_large_are_skipped(setup, frozen_graph, tmp_path):
    """A link planted at the name the video's temporary file once had is left alone (the file
    it points to was overwritten with the video); a video OpenCV cannot write (frames 8400 wide
    for MPEG-4) and one whose frames exceed the image pixel limit are skipped, the other inputs
    kept and detections.json written."""
    inputs = tmp_path / 'in'
    inputs.mkdir()
    clip = shutil.copy(setup['video'], inputs / 'clip.mp4')
    for name, size in (('wide.avi', (8400, 64)), ('huge.avi', (10240, 10240))):
        writer = cv2.VideoWriter(str(inputs / name), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, size)
        writer.write(np.zeros((size[1], size[0], 3), np.uint8))
        writer.release()
    out = tmp_path / 'out'
    out.mkdir()
    victim = tmp_path / 'victim.txt'
    victim.write_text('mine')
    os.symlink(victim, out / '.clip_det.mp4.tmp.mp4')
    proc = run_script(
        *_detect_into(frozen_graph, f'{clip},{inputs}/wide.avi,{inputs}/huge.avi', out),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert victim.read_text() == 'mine'
    result = json.loads((out / 'detections.json').read_text())
    [video] = result['videos']
    assert video['num_frames'] == 4 and os.path.basename(video['output']) == 'clip_det.mp4'
    assert cv2.VideoCapture(video['output']).get(cv2.CAP_PROP_FRAME_COUNT) == 4
    errors = {os.path.basename(f['file']): f['error'] for f in result['failures']}
    assert 'OpenCV cannot write an MPEG-4 video of 8400x64 frames' in errors['wide.avi']
    assert 'frames are 10240x10240 = 104857600 pixels, more than the limit' in errors['huge.avi']
    assert sorted(os.listdir(out)) == ['.clip_det.mp4.tmp.mp4', 'clip_det.mp4', 'detections.json']


def _checkpoint(setup):
    """The model flags of the checkpoint."""
    return [f'--checkpoint_path={setup["prefix"]}', *MODEL_FLAGS]


def _detect_into(model, inputs, out, *args):
    """detect_ssd_network.py's command line for `inputs` into `out`, `model` its model flags."""
    return ['detect_ssd_network.py', *model, f'--input={inputs}', f'--output_dir={out}', *args]


def _outputs(out):
    """detections.json's outputs: {input name: output name}, and its `kept_outputs`."""
    result = json.loads((out / 'detections.json').read_text())
    listed = {
        os.path.basename(item['file']): os.path.basename(item['output'])
        for item in result['images']
    }
    return listed, result.get('kept_outputs')


def test_a_rerun_after_ctrl_c_replaces_the_interrupted_runs_outputs(frozen_graph, tmp_path):
    """Ctrl-C after some of 80 images, then the same command: it wrote `<name>_det_1.jpg` beside
    each of the interrupted run's unlisted `<name>_det.jpg` (106 files). Now the files are an
    uninterrupted run's: one output per input, the user's img001_det.jpg kept (its input's
    output is img001_det_1.jpg, as in any run), all listed."""
    photos = tmp_path / 'photos'
    for i, image in enumerate(fx.random_images(21, [(60, 80)] * 80)):
        data_fixtures.write_image(str(photos / f'img{i:03d}.jpg'), image, '.jpg')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'img001_det.jpg').write_bytes(b'mine')
    command = _detect_into(frozen_graph, photos, out, '--batch_size=4')
    status, lines = interrupt_when(
        [os.path.join(ROOT, command[0]), *command[1:]],
        lambda: len([n for n in os.listdir(out) if n.endswith('_det.jpg')]) > 10,
    )
    assert status == 130, lines[-20:]
    assert 'run the same command again' in lines[-1], lines[-5:]
    interrupted = {n for n in os.listdir(out) if n.endswith('.jpg')}
    assert 10 < len(interrupted) < 81 and 'detections.json' not in os.listdir(out)

    proc = run_script(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = {f'img{i:03d}.jpg': f'img{i:03d}_det.jpg' for i in range(80)}
    want['img001.jpg'] = 'img001_det_1.jpg'
    assert sorted(os.listdir(out)) == sorted([*want.values(), 'img001_det.jpg', 'detections.json'])
    assert _outputs(out) == (want, [])
    assert (out / 'img001_det.jpg').read_bytes() == b'mine'
    assert cv2.imread(str(out / 'img079_det.jpg')).shape == (60, 80, 3)


@pytest.mark.parametrize(
    'signum, status, stopped',
    [
        (signal.SIGINT, 130, 'interrupted'),
        # A scheduler's stop: it killed the run at once, no line, the temporary and the lock file
        # left behind.
        (signal.SIGTERM, -signal.SIGTERM, 'terminated (SIGTERM)'),
    ],
)
def test_ctrl_c_while_a_video_is_written_leaves_no_part_of_it(
    frozen_graph, tmp_path, signum, status, stopped
):
    """Ctrl-C once a video's annotated frames were being written: its hidden temporary stayed
    until the same command ran again. Now it goes with the interrupt (or SIGTERM)."""
    photos = tmp_path / 'photos'
    photos.mkdir()
    # Noise: OpenCV's MPEG-4 writer flushes its output in 256 kB pieces, ~5 of these frames
    # (~200 at 80x60); the others leave the test time to interrupt.
    writer = cv2.VideoWriter(
        str(photos / 'clip.avi'), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (320, 240)
    )
    rng = np.random.default_rng(0)
    for _ in range(120):
        writer.write(rng.integers(0, 256, (240, 320, 3), np.uint8))
    writer.release()
    out = tmp_path / 'out'
    out.mkdir()
    command = _detect_into(frozen_graph, photos, out, '--batch_size=1')

    def writing():
        return any(
            n.startswith('.') and n.endswith('.mp4') and (out / n).stat().st_size > 1000
            for n in os.listdir(out)
        )

    ended, lines = interrupt_when(
        [os.path.join(ROOT, command[0]), *command[1:]], writing, signum=signum
    )
    assert ended == status, lines[-20:]
    # Its one input unfinished: nothing written, no record of outputs left.
    assert lines[-1:] == [f'detect_ssd_network: {stopped}; nothing was written to {out}'], lines[
        -5:
    ]
    assert os.listdir(out) == []


CTRL_C_AT_THE_FIRST_IMAGE = r"""
import signal
import sys
import detect_ssd_network
from inference import detection
from tf_extended import logs


def ctrl_c(*args, **kwargs):
    signal.raise_signal(signal.SIGINT)


detection.load_image = ctrl_c
sys.argv = ['detect_ssd_network.py', *sys.argv[1:]]
logs.run(detect_ssd_network.main, detect_ssd_network._interrupted)
"""


def test_ctrl_c_before_the_first_output_leaves_no_record(frozen_graph, tmp_path):
    """A Ctrl-C before any output was written left an empty `.detections_pending.jsonl`, and
    with it the --output_dir the run had made, and a last line saying the outputs written so far
    were there. Now a folder the run made goes, one of the user's keeps only their files."""
    photos, out = tmp_path / 'photos', tmp_path / 'out'
    data_fixtures.write_image(str(photos / 'a.png'), fx.random_images(3, [(40, 50)])[0], '.png')
    proc = run_python(CTRL_C_AT_THE_FIRST_IMAGE, *_detect_into(frozen_graph, photos, out)[1:])
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1:] == [
        f'detect_ssd_network: interrupted; nothing was written to {out}'
    ]
    assert not out.exists()
    out.mkdir()
    (out / 'mine.txt').write_text('mine')
    proc = run_python(CTRL_C_AT_THE_FIRST_IMAGE, *_detect_into(frozen_graph, photos, out)[1:])
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert os.listdir(out) == ['mine.txt']


VIDEO_CUT_BEFORE_ITS_RENAME = r"""
import signal
import sys
import detect_ssd_network
from tf_extended import atomic_io
from tf_extended import logs

replace = atomic_io.replace


def ctrl_c_first(source, target):
    if target.endswith('.mp4'):
        signal.raise_signal(signal.SIGINT)
    replace(source, target)


atomic_io.replace = ctrl_c_first
sys.argv = ['detect_ssd_network.py', *sys.argv[1:]]
logs.run(detect_ssd_network.main, detect_ssd_network._interrupted)
"""


def test_ctrl_c_as_a_finished_video_is_renamed_leaves_no_temporary(frozen_graph, tmp_path):
    """A Ctrl-C after a video's frames were all written and its writer closed, before its
    rename: the hidden temporary stayed (its removal had run already)."""
    photos, out = tmp_path / 'photos', tmp_path / 'out'
    photos.mkdir()
    writer = cv2.VideoWriter(
        str(photos / 'clip.avi'), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (64, 48)
    )
    for value in (0, 255):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    proc = run_python(VIDEO_CUT_BEFORE_ITS_RENAME, *_detect_into(frozen_graph, photos, out)[1:])
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert not out.exists(), proc.stderr[-2000:]  # nothing written: the folder it made goes too


INTERRUPTED_LINES = r"""
import sys
import detect_ssd_network
for out in sys.argv[1:]:
    detect_ssd_network.FLAGS(['detect', '--input=x', f'--output_dir={out}'])
    print(detect_ssd_network._interrupted())
"""


def test_the_interrupt_line_says_what_was_written(tmp_path):
    """A Ctrl-C while the model loaded said 'the annotated images and videos written so far are
    in <folder>' of a folder that did not exist."""
    out, written = tmp_path / 'out', tmp_path / 'written'
    written.mkdir()
    (written / '.detections_pending.jsonl').write_text('')
    proc = run_python(INTERRUPTED_LINES, str(out), str(written))
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == f'nothing was written to {out}', proc.stderr[-2000:]
    assert lines[1].startswith(
        f'the annotated images and videos written so far are in {written}, detections.json was '
        f'not written (.detections_pending.jsonl names them)'
    ), proc.stderr[-2000:]


def test_outputs_a_run_does_not_write_again_stay_listed(frozen_graph, tmp_path):
    """The state an interrupted run leaves (its outputs, named in its record, the last line cut
    short by a kill), then runs on fewer inputs, then on all: the outputs a run did not write
    again stay listed (`kept_outputs`), so the last run writes over them, no `_1` name (it wrote
    `<name>_det_1.png` beside each output a run on fewer inputs had left unlisted)."""
    photos = tmp_path / 'photos'
    names = ['a.png', 'b.png', 'c.png', 'd.png']
    for name, image in zip(names, fx.random_images(22, [(60, 80)] * 4)):
        data_fixtures.write_image(str(photos / name), image, '.png')
    out = tmp_path / 'out'
    out.mkdir()
    for name in ('a_det.png', 'b_det.png', 'c_det.png'):
        (out / name).write_bytes(b'an interrupted run wrote this')
    (out / 'mine_det.png').write_bytes(b'mine')
    (out / '.detections_pending.jsonl').write_text(
        ''.join(
            json.dumps({'file': f'{photos}/{name}.png', 'output': output}) + '\n'
            for name, output in (('a', 'a_det.png'), ('b', 'b_det.png'), ('c', 'c_det.png'))
        )
        + json.dumps({'file': f'{photos}/a.png', 'output': '../photos/a.png'})
        + '\n{"file": "d.png", "output": "d_de'
    )
    for inputs, listed, kept in (
        ('a.png,d.png', ['a', 'd'], ['b', 'c']),  # b, c: the interrupted run's
        ('b.png', ['b'], ['a', 'c', 'd']),  # a, d: listed by the run before
        ('a.png,b.png,c.png,d.png', ['a', 'b', 'c', 'd'], []),
    ):
        paths = ','.join(f'{photos}/{name}' for name in inputs.split(','))
        proc = run_script(*_detect_into(frozen_graph, paths, out, '--batch_size=4'))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _outputs(out) == (
            {f'{n}.png': f'{n}_det.png' for n in listed},
            [{'file': f'{photos}/{n}.png', 'output': f'{n}_det.png'} for n in kept],
        )
        if 'c' in kept:  # not written again: left as it is
            assert (out / 'c_det.png').read_bytes() == b'an interrupted run wrote this'
    assert sorted(os.listdir(out)) == [
        'a_det.png',
        'b_det.png',
        'c_det.png',
        'd_det.png',
        'detections.json',
        'mine_det.png',
    ]
    assert (out / 'mine_det.png').read_bytes() == b'mine'
    assert cv2.imread(str(out / 'c_det.png')).shape == (60, 80, 3)
    assert sorted(os.listdir(photos)) == names


def test_the_same_command_into_its_input_folder_writes_the_same_names(frozen_graph, tmp_path):
    """`--input=imgs --output_dir=imgs` run twice: the second run took the first's outputs as
    inputs (6 images, writing `a_det_det.jpg`, `a_det_1.jpg`, ...)."""
    imgs = tmp_path / 'imgs'
    names = ['a.jpg', 'b.png', 'c.jpg']
    for name, image in zip(names, fx.random_images(23, [(60, 80)] * 3)):
        data_fixtures.write_image(str(imgs / name), image, os.path.splitext(name)[1])
    want = {'a.jpg': 'a_det.jpg', 'b.png': 'b_det.png', 'c.jpg': 'c_det.jpg'}
    skipped = (
        'skipped 3 file(s) of --input that earlier runs of this script wrote (listed as '
        'outputs by the detections.json or .detections_pending.jsonl of their folder)\n'
    )
    proc = run_script(*_detect_into(frozen_graph, imgs, imgs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _outputs(imgs) == (want, [])
    assert 'processed 3 image(s)/frame(s)' in proc.stdout
    assert skipped not in proc.stdout and 'note: left out' not in proc.stdout, proc.stdout
    # The second run, with a file and a folder of the user's beside: the note names them, not
    # the outputs or detections.json.
    (imgs / 'list.txt').write_text('a.jpg')
    (imgs / 'raw').mkdir()
    proc = run_script(*_detect_into(frozen_graph, imgs, imgs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _outputs(imgs) == (want, [])
    assert 'processed 3 image(s)/frame(s)' in proc.stdout
    assert skipped in proc.stdout, proc.stdout
    assert (
        'note: left out what the --input folders hold besides images and videos (by extension: '
        '.jpg .jpeg .png .bmp .gif .webp .tif .tiff .mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg; '
        'folders are not searched recursively): 1 .txt file, 1 folder\n'
    ) in proc.stdout, proc.stdout
    (imgs / 'list.txt').unlink()
    (imgs / 'raw').rmdir()
    assert sorted(os.listdir(imgs)) == sorted([*names, *want.values(), 'detections.json'])


def test_inputs_of_one_stem_get_distinct_outputs_in_input_order(frozen_graph, tmp_path):
    """`a.bmp` and `a.tif` both give a `.png`: the first in sorted order takes `a_det.png`, the
    other `a_det_1.png`; `a.jpg` keeps its own extension. detections.json pairs them."""
    photos = tmp_path / 'photos'
    image = fx.random_images(25, [(60, 80)])[0]
    for name in ('a.tif', 'a.jpg', 'a.bmp'):
        data_fixtures.write_image(str(photos / name), image, os.path.splitext(name)[1])
    out = tmp_path / 'out'
    proc = run_script(*_detect_into(frozen_graph, photos, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = {'a.bmp': 'a_det.png', 'a.jpg': 'a_det.jpg', 'a.tif': 'a_det_1.png'}
    assert _outputs(out) == (want, [])


def test_a_planted_record_does_not_hand_over_the_users_file(frozen_graph, tmp_path):
    """A detections.json of the right shape listing the user's `img_det.jpg` under
    `kept_outputs` (no input of it listed) made detect write over it."""
    photos = tmp_path / 'photos'
    data_fixtures.write_image(str(photos / 'img.jpg'), fx.random_images(24, [(60, 80)])[0], '.jpg')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'img_det.jpg').write_bytes(b'mine')
    planted = {
        'model': {},
        'num_processed': 0,
        'images': [],
        'videos': [],
        'kept_outputs': ['img_det.jpg'],
    }
    (out / 'detections.json').write_text(json.dumps(planted))
    proc = run_script(*_detect_into(frozen_graph, photos, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / 'img_det.jpg').read_bytes() == b'mine'
    assert _outputs(out) == ({'img.jpg': 'img_det_1.jpg'}, [])
    assert sorted(os.listdir(out)) == ['detections.json', 'img_det.jpg', 'img_det_1.jpg']
