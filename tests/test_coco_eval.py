"""COCO evaluation equals pycocotools run on the original annotation file.

The file is written the way real COCO files are: non-contiguous category ids, areas that are not
w*h (polygon areas), crowd regions, boxes reaching past the image edge (clipped by the converter
for training), boxes the converter drops (zero width, outside the image), an image without
annotations, annotation ids out of file order. pycocotools is the reference: `COCO(file)`,
`loadRes`, `COCOeval`, per class by `params.catIds = [category]`.
"""

import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation import evaluate
from model import card as card_lib
from tests import data_fixtures as fx
from tests import eval_fixtures
from tests.conftest import run_script
from tf_extended import coco_metrics

MODEL, DEPTH, STEP = 'ssd_300_mobilenet', 0.25, 7

CATEGORIES = [
    {'id': 18, 'name': 'dog'},
    {'id': 1, 'name': 'person'},
    {'id': 3, 'name': 'car'},
    {'id': 10, 'name': 'traffic light'},
    {'id': 90, 'name': 'a/b'},
]  # a/b: no objects
# (file_name, id, (width, height))
IMAGES = [
    ('one.jpg', 5, (120, 100)),
    ('two.jpg', 2, (64, 48)),
    ('empty.jpg', 9, (50, 40)),
    ('four.jpg', 31, (80, 60)),
]


def _ann(ann_id, image_id, category_id, bbox, area, iscrowd=0):
    return fx.coco_annotation(ann_id, image_id, category_id, bbox, area, iscrowd, segmentation=[])


ANNOTATIONS = [
    _ann(7, 5, 1, [2, 2, 96, 96], 7000.5),  # polygon area below w*h (medium, not large)
    _ann(3, 5, 3, [80.25, 60, 60, 50], 2500.75),  # past the right and bottom edges
    _ann(12, 5, 1, [0, 50, 120, 50], 4000, iscrowd=1),  # crowd region
    _ann(4, 2, 18, [-5, -3, 30, 20], 450.25),  # past the left and top edges
    _ann(40, 2, 1, [10, 10, 20, 20], 380),
    _ann(41, 2, 3, [40.3, 30.7, 8.2, 6.1], 40.02),  # small
    _ann(50, 31, 10, [20, 10, 10, 25], 200),
    _ann(51, 31, 1, [0, 0, 80, 60], 3000, iscrowd=1),
    _ann(52, 31, 1, [30, 20, 30, 30], 850.7),
    _ann(53, 31, 3, [5, 5, 0, 10], 0),  # zero width: dropped from the records
    _ann(54, 31, 3, [100, 100, 10, 10], 100),  # outside the image: dropped
    _ann(55, 31, 1, [50, 30, 32, 32], 1024),  # exactly 32^2 (small and medium)
    # Nearly the whole image: the largest anchors of a random-weight net hit these.
    _ann(60, 5, 18, [3, 2, 115, 96], 9000.5),
    _ann(61, 31, 3, [2, 2, 76, 56], 4000),
]


def write_coco_file(root):
    images = [
        (name, image_id, fx.smooth_image(size[1], size[0], image_id), size)
        for name, image_id, size in IMAGES
    ]
    return fx.write_coco(root, images, CATEGORIES, ANNOTATIONS)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_eval')
    ann_path, img_dir = write_coco_file(str(root))
    records = str(root / 'records')
    meta = fx.convert_coco(ann_path, img_dir, records, output_name='test')
    return {
        'root': root,
        'ann_path': ann_path,
        'records': records,
        'meta': meta,
        'examples': fx.read_examples(records, 'test'),
    }


def pycocotools_reference(ann_path, detections):
    """(12 stats, {category name: AP}, {category name: AP50}) of pycocotools on the file."""
    gt = COCO(ann_path)
    dt = gt.loadRes(detections)

    def run(cat_ids=None):
        e = COCOeval(gt, dt, iouType='bbox')
        if cat_ids is not None:
            e.params.catIds = cat_ids
        e.evaluate()
        e.accumulate()
        e.summarize()
        return e.stats

    stats = run()
    per_class = {c['name']: run([c['id']]) for c in gt.dataset['categories']}
    return stats, {n: s[0] for n, s in per_class.items()}, {n: s[1] for n, s in per_class.items()}


def same(ours, reference):
    """Our None (pycocotools' -1) and exact equality elsewhere."""
    return (ours is None and reference == -1) or ours == reference


def designed_detections(examples, meta, seed=0):
    """Per example (boxes relative to the decoded image, clipped as the eval clips them, scores,
    labels): every annotation of the file jittered (crowd regions and dropped boxes included), a
    few boxes inside crowd regions, false positives, one on the empty image."""
    rng = np.random.default_rng(seed)
    label_of = {c['coco_category_id']: c['id'] for c in meta['classes']}
    out = []
    for ex in examples:
        height, width = ex['shape'][:2]
        boxes, labels = [], []
        for ann in json.loads(ex['coco_annotations']):
            x, y, w, h = ann['bbox']
            for _ in range(2):
                jx, jy = rng.normal(0, 0.08, 2) * max(w, 4)
                boxes.append(
                    [
                        (y + jy) / height,
                        (x + jx) / width,
                        (y + jy + h) / height,
                        (x + jx + w * rng.uniform(0.7, 1.2)) / width,
                    ]
                )
                labels.append(label_of[ann['category_id']])
        for _ in range(3):  # anywhere, any class: mostly false positives, some inside crowds
            y0, x0 = rng.uniform(0, 0.7, 2)
            boxes.append([y0, x0, y0 + rng.uniform(0.05, 0.3), x0 + rng.uniform(0.05, 0.3)])
            labels.append(int(rng.integers(1, len(meta['classes']) + 1)))
        boxes = np.clip(np.reshape(boxes, (-1, 4)), 0.0, 1.0)
        out.append((boxes, rng.uniform(0.05, 1.0, len(boxes)), np.asarray(labels)))
    return out


def collect(examples, meta, detections, remove_difficult, stored=True):
    class_names = {c['id']: c['name'] for c in meta['classes']}
    label_to_category = {c['id']: c['coco_category_id'] for c in meta['classes']}
    coco = evaluate._CocoCollector(class_names, label_to_category, remove_difficult)
    for index, (ex, det) in enumerate(zip(examples, detections), 1):
        key = evaluate.image_key(ex['filename'], index)
        coco.add_image(
            key,
            index,
            int(ex['image_id']),
            ex['shape'][:2],
            ex['bboxes'],
            ex['labels'],
            ex['difficult'] > 0,
            ex['iscrowd'] > 0,
            *det,
            ex['coco_annotations'] if stored else b'',
        )
    return coco


def test_records_keep_the_files_annotations(converted):
    by_id = {ex['image_id']: json.loads(ex['coco_annotations']) for ex in converted['examples']}
    assert sorted(by_id) == [2, 5, 9, 31] and by_id[9] == []
    for image_id, stored in by_id.items():
        expected = [(i, a) for i, a in enumerate(ANNOTATIONS) if a['image_id'] == image_id]
        assert [s['index'] for s in stored] == [i for i, _ in expected]  # the file's order
        for s, (_, a) in zip(stored, expected):
            assert (s['id'], s['category_id'], s['bbox'], s['area'], s['iscrowd']) == (
                a['id'],
                a['category_id'],
                a['bbox'],
                a['area'],
                a['iscrowd'],
            )
    four = next(ex for ex in converted['examples'] if ex['image_id'] == 31)
    assert len(four['labels']) == 5  # the zero-width and outside boxes are not training objects
    np.testing.assert_array_equal(four['iscrowd'], [0, 1, 0, 0, 0])


@pytest.mark.parametrize('remove_difficult', [True, False])
def test_collector_equals_pycocotools_on_the_file(converted, remove_difficult):
    examples, meta = converted['examples'], converted['meta']
    coco = collect(examples, meta, designed_detections(examples, meta), remove_difficult)
    ours = coco_metrics.evaluate_coco_per_class(coco.ground_truth(), coco.detections)
    stats, ap, ap50 = pycocotools_reference(converted['ann_path'], coco.detections)
    assert 0.2 < stats[0] < 0.95 and stats[3] > -1  # a real test: neither 0 nor 1, small boxes
    for name, reference in zip(coco_metrics.COCO_METRIC_NAMES, stats):
        assert same(ours.metrics[name], reference), (name, ours.metrics[name], reference)
    for name in ap:
        assert same(ours.class_ap[name], ap[name]) and same(ours.class_ap50[name], ap50[name]), name
    assert ours.class_ap['a/b'] is None


def test_coco_outputs_check_the_detections_once(converted, tmp_path, monkeypatch):
    """The evaluation's detections are checked once, for both COCOeval and coco_detections.json
    (500k detections take 2 s to check)."""
    examples, meta = converted['examples'], converted['meta']
    coco = collect(examples, meta, designed_detections(examples, meta), True)
    checks, check = [], coco_metrics._check_results
    monkeypatch.setattr(
        coco_metrics, '_check_results', lambda dets, src: checks.append(src) or check(dets, src)
    )
    result, metrics, _ = evaluate._coco_outputs(coco, str(tmp_path), None, '/data/records')
    assert len(checks) == 1
    with open(tmp_path / 'coco_detections.json') as f:
        written = json.load(f)
    assert written == coco.detections
    stats, _, _ = pycocotools_reference(converted['ann_path'], written)
    for name, reference in zip(coco_metrics.COCO_METRIC_NAMES, stats):
        assert same(metrics[name], reference), (name, metrics[name], reference)


def test_records_ground_truth_problem_names_the_records(converted, tmp_path, monkeypatch):
    """Annotations the records hold that COCOeval cannot use (here two of one id, as an older
    converter kept them) name the records and say to convert again, not to pass a file."""
    examples, meta = converted['examples'], converted['meta']
    coco = collect(examples, meta, designed_detections(examples, meta), True)
    ground_truth = coco.ground_truth()
    ground_truth['annotations'][1]['id'] = ground_truth['annotations'][0]['id']
    monkeypatch.setattr(coco, 'ground_truth', lambda: ground_truth)
    with pytest.raises(ValueError) as err:
        evaluate._coco_outputs(coco, str(tmp_path), None, '/data/records')
    twice = ground_truth['annotations'][0]['id']
    assert str(err.value) == (
        f'/data/records (the COCO annotations its records hold): cannot score against these '
        f'COCO annotations (id {twice} appears twice in "annotations"); convert the dataset '
        f'again with tf_convert_data.py.'
    )


def test_boxes_from_the_records_would_not_be_pycocotools(converted):
    """What the stored annotations fix: ground truth rebuilt from the clipped float32 boxes with
    w*h areas (older records) gives other numbers on this file."""
    examples, meta = converted['examples'], converted['meta']
    coco = collect(examples, meta, designed_detections(examples, meta), True, stored=False)
    ours = coco_metrics.evaluate_coco(coco.ground_truth(), coco.detections)
    stats, _, _ = pycocotools_reference(converted['ann_path'], coco.detections)
    differ = [n for n, r in zip(coco_metrics.COCO_METRIC_NAMES, stats) if not same(ours[n], r)]
    assert {'AP_medium', 'AP_large'} & set(differ), differ


def test_derived_ground_truth_keeps_exact_pixels():
    """Records without COCO annotations (VOC data): pixels come back rounded to 1/1000, so an
    exactly 96x96 box has area 9216 (float32 relative boxes alone give 9216.0004...)."""
    shape = (375, 500)
    pixels = np.array([[13, 7, 96, 96], [0.5, 10.25, 100.125, 3]], np.float64)  # x y w h
    relative = np.stack(
        [
            pixels[:, 1] / shape[0],
            pixels[:, 0] / shape[1],
            (pixels[:, 1] + pixels[:, 3]) / shape[0],
            (pixels[:, 0] + pixels[:, 2]) / shape[1],
        ],
        1,
    ).astype(np.float32)
    raw = coco_metrics.coco_boxes_from_relative(relative, shape)
    assert raw[0, 2] * raw[0, 3] != 9216
    boxes = coco_metrics.coco_ground_truth_boxes(relative, shape)
    np.testing.assert_array_equal(boxes, pixels)
    coco = evaluate._CocoCollector({1: 'thing'}, {1: 1}, remove_difficult=True)
    coco.add_image(
        '000001',
        1,
        -1,
        shape,
        relative,
        np.array([1, 1]),
        np.array([False, True]),
        np.array([False, False]),
        np.zeros((0, 4)),
        np.zeros(0),
        np.zeros(0, np.int64),
    )
    anns = coco.ground_truth()['annotations']
    assert [(a['area'], a['iscrowd']) for a in anns] == [(9216.0, 0), (100.125 * 3, 1)]
    assert coco.ground_truth()['images'][0]['id'] == 1


def test_derived_ground_truth_sizes_are_rounded_differences():
    """w and h are rounded after the subtraction: 128.2 - 32.2 is 95.99999999999999 in float64,
    which would make a 96-pixel-wide box "medium" (area < 96²) for COCOeval."""
    shape = (375, 500)
    pixels = np.array([[32.2, 3.001, 96, 32]], np.float64)  # x y w h
    relative = np.array(
        [[3.001 / 375, 32.2 / 500, (3.001 + 32) / 375, (32.2 + 96) / 500]], np.float32
    )
    assert 128.2 - 32.2 != 96 and 35.001 - 3.001 != 32  # the float64 differences
    np.testing.assert_array_equal(coco_metrics.coco_ground_truth_boxes(relative, shape), pixels)


def test_voc_ids_of_digits_and_names_get_distinct_coco_ids():
    """VOC-style records: an id of ASCII digits is its number unless an image before it has that
    number; every other image gets the numbers after the largest (the third image, `b`, took
    id 3, the position, which `3` already had: "COCO image id 3 is used twice"). Each image's
    one object and its exact detection keep its id: AP 1 by pycocotools."""
    keys = ['3', 'cat', 'b', '007', '7', '\u00b2']  # '²': str.isdigit, not int()
    coco = evaluate._CocoCollector({1: 'thing'}, {1: 1}, remove_difficult=True)
    boxes = {}
    for index, key in enumerate(keys, 1):
        box = np.array([[0.1 * index, 0.05, 0.1 * index + 0.08, 0.5]])  # one per image
        boxes[key] = coco_metrics.coco_ground_truth_boxes(box, (100, 200))[0].tolist()
        one, no = np.ones(1, np.int64), np.zeros(1, bool)
        coco.add_image(key, index, -1, (100, 200), box, one, no, no, box, [0.9], one)
    ground_truth = coco.ground_truth()
    ids = {image['file_name']: image['id'] for image in ground_truth['images']}
    assert ids == {'3': 3, 'cat': 8, 'b': 9, '007': 7, '7': 10, '\u00b2': 11}
    for key in keys:
        (ann,) = [a for a in ground_truth['annotations'] if a['image_id'] == ids[key]]
        (det,) = [d for d in coco.detections if d['image_id'] == ids[key]]
        assert ann['bbox'] == boxes[key] and np.allclose(det['bbox'], boxes[key])
    assert coco_metrics.evaluate_coco(ground_truth, coco.detections)['AP'] == 1.0


def _image_ids(records):
    """The COCO image ids the collector gives `records`, [(key, COCO id or -1)]."""
    coco = evaluate._CocoCollector({1: 'thing'}, {1: 1}, remove_difficult=True)
    none, no = np.zeros((0, 4)), np.zeros(0, bool)
    for index, (key, coco_id) in enumerate(records, 1):
        empty = np.zeros(0, np.int64)
        coco.add_image(key, index, coco_id, (10, 10), none, empty, no, no, none, [], empty)
    return [image['id'] for image in coco.ground_truth()['images']]


def test_coco_ids_of_records_reserve_their_numbers_and_stay_within_int64():
    """A record's own COCO id is taken before VOC-style ids are numbered (a later `5` gave a
    VOC id 5 twice); a digit id too long for an int64 is numbered as a name; a number past the
    largest int64 (after a record's COCO id 2**63 - 1) is refused by name, not as numpy's
    OverflowError."""
    assert _image_ids([('5', -1), ('cat', -1), ('000000000005', 5)]) == [6, 7, 5]
    assert _image_ids([('9' * 19, -1), ('a', -1)]) == [1, 2]
    with pytest.raises(ValueError) as info:
        _image_ids([('x', 2**63 - 1), ('a', -1)])
    assert str(info.value) == (
        "COCO image ids: image 'a' (record 2) would be numbered past 9223372036854775807, the "
        'largest id, which image ids of digits or COCO ids take; rename the images or convert '
        'them with COCO ids.'
    )


def test_collector_detections_are_each_images_in_order():
    """The collector keeps detections as arrays and builds the result dicts once: the same
    dicts, in evaluation order, as a plain-Python conversion image by image (an image without
    detections among them); a label without a category is refused naming the image."""
    rng = np.random.default_rng(3)
    label_to_category = {1: 7, 2: 90, 3: 1}
    coco = evaluate._CocoCollector({1: 'a', 2: 'b', 3: 'c'}, label_to_category)
    want = []
    for index, (count, shape) in enumerate([(5, (375, 500)), (0, (20, 30)), (4, (640, 427))], 1):
        boxes = np.sort(rng.random((count, 4)).astype(np.float32).reshape(count, 2, 2), 1)
        boxes = boxes.reshape(count, 4)[:, [0, 2, 1, 3]]
        scores = rng.random(count).astype(np.float32)
        labels = rng.integers(1, 4, count)
        coco.add_image(
            f'{index:06d}', index, -1, shape, np.zeros((0, 4)), np.zeros(0, np.int64),
            np.zeros(0, bool), np.zeros(0, bool), boxes, scores, labels,
        )  # fmt: skip
        height, width = shape
        for (ymin, xmin, ymax, xmax), score, label in zip(boxes.tolist(), scores, labels):
            want.append(
                {
                    'image_id': index,
                    'category_id': label_to_category[int(label)],
                    'bbox': [
                        xmin * width,
                        ymin * height,
                        (xmax - xmin) * width,
                        (ymax - ymin) * height,
                    ],
                    'score': float(score),
                }
            )
    got = coco.detections
    assert got == want and len(got) == 9
    assert all(type(v) is float for det in got for v in det['bbox'] + [det['score']])
    assert all(type(det['image_id']) is type(det['category_id']) is int for det in got)
    with pytest.raises(ValueError, match="'000004'.*label 4 has no entry"):
        coco.add_image(
            '000004', 4, -1, (10, 10), np.zeros((0, 4)), np.zeros(0, np.int64),
            np.zeros(0, bool), np.zeros(0, bool), np.full((1, 4), 0.5), [0.5], [4],
        )  # fmt: skip
    assert evaluate._CocoCollector({1: 'a'}, {1: 1}).detections == []


# ------------------------------------------------------------------------------------------------
# The evaluation script and evaluate_checkpoint, with a random-weight net
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def checkpoint(converted):
    names = [c['name'] for c in converted['meta']['classes']]
    train_dir = converted['root'] / 'train'
    prefix = eval_fixtures.write_random_checkpoint(
        str(train_dir / 'model.ckpt'), MODEL, len(names) + 1, STEP, seed=2, depth_multiplier=DEPTH
    )
    # Many loosely suppressed detections: random weights then hit some objects.
    card = eval_fixtures.small_card(
        MODEL, names, depth_multiplier=DEPTH, keep_top_k=1000, nms_threshold=0.9
    )
    card_lib.write(str(train_dir / card_lib.CARD_FILE), card)
    return {'prefix': prefix, 'card': card}


def check_against_pycocotools(eval_dir, ann_path, summary):
    with open(os.path.join(eval_dir, 'coco_detections.json')) as f:
        detections = json.load(f)
    stats, ap, ap50 = pycocotools_reference(ann_path, detections)
    assert stats[1] > 0  # random weights find something
    for name, reference in zip(coco_metrics.COCO_METRIC_NAMES, stats):
        assert same(summary['coco'][name], reference), (name, summary['coco'][name], reference)
    for row in summary['classes']:
        assert same(row['ap_coco'], ap[row['name']]) and same(row['ap50_coco'], ap50[row['name']])
    # The label column is the COCO category id, beside the model's label.
    assert [(r['label'], r['model_label'], r['name']) for r in summary['classes']] == [
        (1, 1, 'person'),
        (3, 2, 'car'),
        (10, 3, 'traffic light'),
        (18, 4, 'dog'),
        (90, 5, 'a/b'),
    ]


def test_eval_script_coco_only_without_remove_difficult(converted, checkpoint):
    eval_dir = str(converted['root'] / 'eval_script')
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={checkpoint["prefix"]}',
        f'--eval_dir={eval_dir}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={converted["records"]}',
        '--metrics=coco',
        '--noremove_difficult',
        '--batch_size=2',
        '--num_threads=2',
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(eval_dir, 'results.json')) as f:
        summary = json.load(f)
    check_against_pycocotools(eval_dir, converted['ann_path'], summary)
    # Only COCO was asked for: no devkit files, no VOC plots, no VOC table.
    assert not [n for n in os.listdir(eval_dir) if n.startswith('comp4_det_') or n == 'pr_curves']
    assert 'VOC detection AP' not in proc.stdout and 'traffic light' in proc.stdout
    assert summary['metrics'] == {'coco': summary['coco']['AP']}


def test_evaluate_checkpoint_with_voc_and_coco(converted, checkpoint):
    eval_dir = str(converted['root'] / 'eval_lib')
    settings = evaluate.EvalSettings(
        card=checkpoint['card'],
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=converted['records'],
        batch_size=3,
        metrics=('voc07', 'voc12', 'coco'),
        remove_difficult=True,
        num_threads=2,
        pr_curves=True,
    )
    result = evaluate.evaluate_checkpoint(
        settings, checkpoint['prefix'], eval_dir, log=lambda _: None
    )
    check_against_pycocotools(eval_dir, converted['ann_path'], result.summary)
    files = sorted(os.listdir(eval_dir))
    assert 'comp4_det_test_traffic_light.txt' in files and 'comp4_det_test_a_b.txt' in files
    # VOC metrics ignore crowd regions (the file has two, both person).
    person = next(r for r in result.summary['classes'] if r['name'] == 'person')
    assert (person['num_gt'], person['num_difficult'], person['coco_num_crowd']) == (6, 2, 2)
    with open(os.path.join(eval_dir, 'results.txt')) as f:
        table = f.read()
    # The VOC table counts the crowd regions in its "ignored" column.
    row = next(line for line in table.splitlines() if line.split()[1:2] == ['person'])
    assert row.split()[2:4] == ['6', '2']
    # Both tables show the category id in the label column.
    assert sum(line.split()[:3] == ['10', 'traffic', 'light'] for line in table.splitlines()) == 2


@pytest.mark.parametrize(
    'text, message',
    [
        ('[' * 100000, 'nests its JSON too deeply'),  # a RecursionError traceback before
        ('{"id": 1}', 'is not a list'),
        ('[{"id": 1, "category_id": 1, "bbox": [1' + '0' * 400 + ', 0, 1, 1], "area": 1, '
         '"iscrowd": 0, "index": 0}]', 'finite numbers'),  # an OverflowError before
        ('[{"id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": NaN, "iscrowd": 0, '
         '"index": 0}]', 'finite numbers'),
    ],
)  # fmt: skip
def test_stored_annotations_that_records_cannot_hold_are_refused(text, message):
    """A record's image/coco/annotations comes from the converter, but records travel: what
    it could not have written is a ValueError naming the image."""
    with pytest.raises(ValueError, match=f"image '000005' \\(COCO id 5\\).*{message}"):
        evaluate._stored_annotations(text, 5, '000005')
