"""A COCO user's path: a file shaped like instances_val2017.json, and unusual COCO file names.

The first file has what the real one has: `info`, `licenses`, images with `coco_url` and
`date_captured`, categories with `supercategory` and ids with gaps (1, 3, 18, 90), polygon
`segmentation`s and crowd regions with uncompressed RLE, `area`s computed from the masks
(pycocotools.mask, not w*h), images without annotations, boxes below 32² and above 96².
pycocotools run on that file is the reference, exactly.

The second one has file names real COCO files do not have but COCO-format files do: subfolders
with one base name (`a/000000000001.jpg`, `b/000000000001.jpg`), one file under two image ids, a
space in a name; with a box partly outside the image, a zero-width box and a JSON size that is
not the decoded image's. Evaluating it with VOC and COCO metrics used to fail: the devkit files'
image ids were the file stems (duplicates; a space is not allowed there).
"""

import json
import os
import types

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation import evaluate
from inference import detection
from model import card as card_lib
from tests import data_fixtures as fx
from tests import eval_fixtures
from tests.conftest import readme_python_block
from tests.test_coco_eval import (
    collect,
    designed_detections,
    pycocotools_reference,
    same,
)
from tf_extended import coco_metrics

CATEGORIES = [
    {'supercategory': 'person', 'id': 1, 'name': 'person'},
    {'supercategory': 'vehicle', 'id': 3, 'name': 'car'},
    {'supercategory': 'animal', 'id': 18, 'name': 'dog'},
    {'supercategory': 'indoor', 'id': 90, 'name': 'toothbrush'},
]
# (image id, width, height); 632 and 776 have no annotations.
IMAGES = [(139, 160, 120), (285, 200, 150), (632, 120, 90), (724, 180, 140), (776, 100, 100)]
# (annotation id, image id, category id, polygon); boxes and areas come from the masks.
POLYGONS = [
    (2001, 139, 1, [(5.5, 8.2), (130.4, 10.1), (150.2, 115.7), (10.3, 112.9)]),  # large
    (2002, 139, 90, [(140.1, 5.3), (152.6, 6.0), (150.9, 14.8), (141.2, 13.1)]),  # tiny
    (1500, 285, 3, [(20.0, 30.0), (80.5, 28.0), (85.0, 70.2), (18.3, 72.0)]),
    (1501, 285, 18, [(60.0, 20.0), (190.0, 25.0), (195.5, 140.0), (70.0, 145.0), (55.0, 80.0)]),
    (1502, 285, 1, [(150.2, 100.1), (170.7, 100.3), (168.9, 125.6), (152.0, 124.4)]),  # small
    (1499, 285, 3, [(5.0, 100.0), (45.0, 102.0), (44.0, 140.0), (4.0, 138.0)]),
    (3000, 724, 18, [(10.0, 10.0), (120.0, 12.0), (118.0, 125.0), (12.0, 130.0)]),
    (3001, 724, 1, [(130.0, 40.0), (170.0, 40.0), (172.0, 90.0), (128.0, 92.0)]),
]
# (annotation id, image id, category id, (x0, y0, x1, y1)): crowd regions, a notch cut out.
CROWDS = [(900100, 139, 1, (100, 60, 158, 119)), (900101, 724, 3, (0, 100, 60, 139))]


def _uncompressed_rle(mask):
    """COCO's crowd `segmentation`: column-major run lengths starting with zeros."""
    flat = mask.ravel(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0] + counts if flat[0] else counts


def write_val2017_like(root):
    """Writes root/val2017/<id:012d>.jpg and root/annotations/instances_val2017.json."""
    size = {image_id: (height, width) for image_id, width, height in IMAGES}
    images = []
    for image_id, width, height in IMAGES:
        file_name = f'{image_id:012d}.jpg'
        fx.write_image(
            os.path.join(root, 'val2017', file_name), fx.smooth_image(height, width, image_id)
        )
        images.append(
            {
                'license': 3,
                'file_name': file_name,
                'coco_url': f'http://images.cocodataset.org/val2017/{file_name}',
                'height': height,
                'width': width,
                'date_captured': '2013-11-21 01:34:01',
                'flickr_url': f'http://farm9.staticflickr.com/{file_name}',
                'id': image_id,
            }
        )
    annotations = []
    for ann_id, image_id, category_id, points in POLYGONS:
        segmentation = [[float(v) for point in points for v in point]]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, *size[image_id]))
        xs, ys = zip(*points)
        annotations.append(
            {
                'segmentation': segmentation,
                'area': float(mask_utils.area(rle)),
                'iscrowd': 0,
                'image_id': image_id,
                'bbox': [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                'category_id': category_id,
                'id': ann_id,
            }
        )
    for ann_id, image_id, category_id, (x0, y0, x1, y1) in CROWDS:
        mask = np.zeros(size[image_id], np.uint8)
        mask[y0:y1, x0:x1] = 1
        mask[y0 : y0 + 5, x0 : x0 + 5] = 0
        segmentation = {'counts': _uncompressed_rle(mask), 'size': list(size[image_id])}
        rle = mask_utils.frPyObjects(segmentation, *size[image_id])
        annotations.append(
            {
                'segmentation': segmentation,
                'area': float(mask_utils.area(rle)),
                'iscrowd': 1,
                'image_id': image_id,
                'bbox': mask_utils.toBbox(rle).tolist(),
                'category_id': category_id,
                'id': ann_id,
            }
        )
    data = {
        'info': {'description': 'COCO 2017 Dataset', 'version': '1.0', 'year': 2017},
        'licenses': [{'url': 'http://creativecommons.org/licenses/by-nc-sa/2.0/', 'id': 3}],
        'images': images,
        'annotations': annotations,
        'categories': CATEGORIES,
    }
    ann_path = os.path.join(root, 'annotations', 'instances_val2017.json')
    os.makedirs(os.path.dirname(ann_path))
    with open(ann_path, 'w') as f:
        json.dump(data, f)
    return ann_path, os.path.join(root, 'val2017')


def test_val2017_like_file_equals_pycocotools(tmp_path):
    ann_path, img_dir = write_val2017_like(str(tmp_path))
    with open(ann_path) as f:
        data = json.load(f)
    # The file is what it claims: mask areas below w*h, RLE crowds, every area range.
    areas = {a['id']: (a['area'], a['bbox'][2] * a['bbox'][3]) for a in data['annotations']}
    assert areas[2002] == (90.0, pytest.approx(118.75)) and areas[2001][0] == 13889.0
    assert areas[1502][0] < 32**2 < areas[1500][0] < 96**2 < areas[1501][0]
    assert all(isinstance(a['segmentation']['counts'], list) for a in data['annotations'][-2:])

    meta = fx.convert_coco(ann_path, img_dir, str(tmp_path / 'records'), output_name='val')
    assert [(c['id'], c['name'], c['coco_category_id']) for c in meta['classes']] == [
        (1, 'person', 1),
        (2, 'car', 3),
        (3, 'dog', 18),
        (4, 'toothbrush', 90),
    ]
    assert meta['num_examples'] == 5 and meta['report']['entries'] == []
    examples = fx.read_examples(str(tmp_path / 'records'), 'val')
    assert sorted(int(ex['image_id']) for ex in examples) == [139, 285, 632, 724, 776]
    detections = designed_detections(examples, meta, seed=4)
    coco = collect(examples, meta, detections, remove_difficult=True)
    result = coco_metrics.evaluate_coco_per_class(coco.ground_truth(), coco.detections)

    # The results are what loadRes and the evaluation server take: original category ids,
    # [x, y, w, h] pixels of the original image, plain numbers.
    results = coco.detections
    assert {d['category_id'] for d in results} == {1, 3, 18, 90}
    assert all(sorted(d) == ['bbox', 'category_id', 'image_id', 'score'] for d in results)
    assert all(type(v) is float for d in results for v in d['bbox'] + [d['score']])
    stats, ap, ap50 = pycocotools_reference(ann_path, results)
    assert COCO(ann_path).loadRes(results).getImgIds() == [139, 285, 632, 724, 776]
    assert all(v > 0 for v in stats[:9])  # every area range has ground truth and a hit
    for name, reference in zip(coco_metrics.COCO_METRIC_NAMES, stats):
        assert same(result.metrics[name], reference), (name, result.metrics[name], reference)
    assert list(result.class_ap) == ['person', 'car', 'dog', 'toothbrush']
    for name in result.class_ap:
        assert same(result.class_ap[name], ap[name]) and same(result.class_ap50[name], ap50[name])
    # The ground truth the evaluation builds is the file's, crowds and mask areas included.
    kept = {a['id']: a for a in coco.ground_truth()['annotations']}
    for ann in data['annotations']:
        assert {k: kept[ann['id']][k] for k in ('bbox', 'area', 'iscrowd', 'category_id')} == {
            k: ann[k] for k in ('bbox', 'area', 'iscrowd', 'category_id')
        }


def test_devkit_image_ids_of_coco_images():
    # A COCO image: its id, padded as COCO 2017's file stems; whatever its file name says.
    assert evaluate.image_key(b'000000000139.jpg', 1, 139) == '000000000139'
    assert evaluate.image_key(b'my photo.jpg', 2, 5) == '000000000005'
    assert evaluate.image_key(b'a/1.jpg', 3, 1) != evaluate.image_key(b'b/1.jpg', 4, 2)
    assert evaluate.image_key(b'x.jpg', 5, 2**63 - 1) == str(2**63 - 1)
    # VOC records (no COCO id): the file stem, else the position.
    assert evaluate.image_key(b'2008_000001.jpg', 1) == '2008_000001'
    assert evaluate.image_key(b'', 7, -1) == '000007'


# (file_name, image id, decoded (width, height), JSON (width, height))
ODD_IMAGES = [
    ('a/000000000001.jpg', 1, (100, 80), (100, 80)),
    ('b/000000000001.jpg', 2, (90, 70), (90, 70)),  # another folder, the same base name
    ('dup.jpg', 3, (60, 50), (60, 50)),
    ('dup.jpg', 4, (60, 50), (60, 50)),  # one file under two ids
    ('my photo.jpg', 5, (64, 48), (64, 48)),
    ('size.jpg', 6, (80, 60), (100, 75)),  # the JSON's size is not the image's
]


def _odd_ann(ann_id, image_id, category_id, bbox, area):
    return fx.coco_annotation(
        ann_id, image_id, category_id, bbox, area, segmentation=[[0, 0, 1, 0, 1, 1]]
    )


ODD_ANNOTATIONS = [
    _odd_ann(1, 1, 18, [10, 10, 50, 40], 1800.5),
    _odd_ann(2, 2, 1, [60, 30, 50, 60], 1500),  # past the right edge
    _odd_ann(3, 3, 18, [5, 5, 30, 30], 800),
    _odd_ann(4, 4, 18, [20, 10, 30, 30], 810),
    _odd_ann(5, 5, 1, [4, 4, 40, 30], 1000),
    _odd_ann(6, 1, 1, [30, 20, 0, 10], 0),  # zero width
    _odd_ann(7, 2, 18, [-10, -10, 40, 40], 1200),  # past the left and top edges
    _odd_ann(8, 6, 1, [10, 10, 60, 40], 2000),
    _odd_ann(9, 6, 18, [50, 40, 45, 30], 1100),  # inside the JSON's size, not the image's
]


@pytest.fixture(scope='module')
def odd(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_odd_names')
    images, written = [], set()
    for file_name, image_id, (width, height), _ in ODD_IMAGES:
        if file_name not in written:
            written.add(file_name)
            images.append(
                (file_name, image_id, fx.smooth_image(height, width, image_id), (width, height))
            )
    categories = [{'id': 18, 'name': 'dog'}, {'id': 1, 'name': 'person'}]
    ann_path, img_dir = fx.write_coco(str(root), images, categories, ODD_ANNOTATIONS)
    with open(ann_path) as f:
        data = json.load(f)
    data['images'] = [
        {'id': image_id, 'file_name': file_name, 'width': size[0], 'height': size[1]}
        for file_name, image_id, _, size in ODD_IMAGES
    ]
    with open(ann_path, 'w') as f:
        json.dump(data, f)
    records = str(root / 'records')
    meta = fx.convert_coco(ann_path, img_dir, records, output_name='val')
    return {'root': root, 'ann_path': ann_path, 'records': records, 'meta': meta}


def test_odd_file_names_in_the_records_and_report(odd):
    examples = fx.read_examples(odd['records'], 'val')
    # image/filename is the JSON's file_name (subfolders kept, as the TF Object Detection API).
    assert sorted((int(ex['image_id']), ex['filename'].decode()) for ex in examples) == [
        (image_id, file_name) for file_name, image_id, _, _ in ODD_IMAGES
    ]
    report = [
        (e['file'].split(': ')[-1], e['kind'], e['detail'])
        for e in odd['meta']['report']['entries']
    ]
    one, two = 'image id 1 (000000000001.jpg)', 'image id 2 (000000000001.jpg)'
    six = 'image id 6 (size.jpg)'
    assert report == [
        (one, 'dropped_object', 'annotation 6 (person): zero-area box [x=30, y=20, w=0, h=10]'),
        (two, 'fixed', 'annotation 2 (person): box clipped to the 90x70 image'),
        (two, 'fixed', 'annotation 7 (dog): box clipped to the 90x70 image'),
        (six, 'fixed', 'JSON size 100x75, decoded image is 80x60; using the decoded size'),
        (six, 'fixed', 'annotation 9 (dog): box clipped to the 80x60 image'),
    ]


def test_odd_file_names_evaluate_with_voc_and_coco(odd):
    names = [c['name'] for c in odd['meta']['classes']]
    train_dir = odd['root'] / 'train'
    prefix = eval_fixtures.write_random_checkpoint(
        str(train_dir / 'model.ckpt'), 'ssd_300_mobilenet', 3, 7, seed=2, depth_multiplier=0.25
    )
    card = eval_fixtures.small_card(
        'ssd_300_mobilenet', names, depth_multiplier=0.25, keep_top_k=1000, nms_threshold=0.9
    )
    card_lib.write(str(train_dir / card_lib.CARD_FILE), card)
    settings = evaluate.EvalSettings(
        card=card,
        dataset_name='custom',
        dataset_split_name='val',
        dataset_dir=odd['records'],
        batch_size=3,
        metrics=('voc07', 'coco'),
        num_threads=2,
        pr_curves=False,
    )
    eval_dir = str(odd['root'] / 'eval')
    # Used to fail: "VOCResultsWriter.add_image(image_id='my photo'): image ids must be
    # non-empty and without whitespace" (and 'dup', '000000000001' were each added twice).
    result = evaluate.evaluate_checkpoint(settings, prefix, eval_dir, log=lambda _: None)

    with open(os.path.join(eval_dir, 'coco_detections.json')) as f:
        detections = json.load(f)
    stats, ap, ap50 = pycocotools_reference(odd['ann_path'], detections)
    assert stats[8] > 0  # AR100: random weights find something
    for name, reference in zip(coco_metrics.COCO_METRIC_NAMES, stats):
        assert same(result.coco[name], reference), (name, result.coco[name], reference)
    for row in result.summary['classes']:
        assert same(row['ap_coco'], ap[row['name']]) and same(row['ap50_coco'], ap50[row['name']])
    # The devkit files name each image by its COCO id, once per image.
    ids = set()
    for stem in ('dog', 'person'):
        with open(os.path.join(eval_dir, f'comp4_det_val_{stem}.txt')) as f:
            ids |= {line.split(' ')[0] for line in f}
    assert ids == {f'{image_id:012d}' for _, image_id, _, _ in ODD_IMAGES}
    # VOC: the boxes the converter kept (clipped; the zero-width one dropped).
    rows = {r['name']: (r['num_gt'], r['num_difficult']) for r in result.summary['classes']}
    assert rows == {'person': (3, 0), 'dog': (5, 0)}
    # The ground truth written beside the detections names each image by the JSON's file_name
    # and the decoded size the detections are in.
    with open(os.path.join(eval_dir, 'coco_ground_truth.json')) as f:
        written = json.load(f)
    assert sorted(
        (i['id'], i['file_name'], i['width'], i['height']) for i in written['images']
    ) == [
        (image_id, file_name, width, height)
        for file_name, image_id, (width, height), _ in ODD_IMAGES
    ]


def test_coco_metrics_on_records_that_skipped_images_say_so(tmp_path, monkeypatch):
    """Images the converter skipped (--skip_bad_examples) are not evaluated: pycocotools on the
    annotation file counts their objects as missed, so the numbers differ from it; the README
    said so, the log did not."""
    ann_path, img_dir = write_val2017_like(str(tmp_path))
    os.remove(os.path.join(img_dir, sorted(os.listdir(img_dir))[0]))
    records = str(tmp_path / 'records')
    meta = fx.convert_coco(
        ann_path, img_dir, records, output_name='coco_2017_val', skip_bad_examples=True
    )
    assert meta['num_examples'] == 4 and meta['report']['counts']['skipped_example'] == 1
    card = card_lib.from_registry(
        'ssd_300_mobilenet', class_names=('person', 'car', 'dog', 'toothbrush')
    )
    warnings = []
    monkeypatch.setattr(evaluate.logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
    for metrics, said in ((('voc07', 'coco'), True), (('voc07',), False)):
        warnings.clear()
        settings = evaluate.EvalSettings(
            card=card,
            dataset_name='coco_2017',
            dataset_split_name='val',
            dataset_dir=records,
            metrics=metrics,
        )
        evaluate.open_dataset(settings, card)
        assert warnings == (
            [
                'The records of coco_2017/val leave out 1 image(s) the converter skipped '
                "(--skip_bad_examples, listed in its metadata): the COCO numbers cover the "
                "records' images; pycocotools on the annotation file would count their objects "
                'as missed.'
            ]
            if said
            else []
        )


def test_the_readme_snippet_makes_coco_results_of_detections_json(tmp_path, monkeypatch):
    """detections.json (images by file, corner boxes in pixels) is no COCO results file, and the
    README gave no way from one to the other: its snippet's output must load in pycocotools with
    the annotation file's image ids and [x, y, width, height] boxes."""
    monkeypatch.chdir(tmp_path)
    os.makedirs('annotations')
    os.makedirs('detections')
    names = ('dog', 'toothbrush')
    ground_truth = {
        'images': [
            {'id': 724, 'file_name': '000000000724.jpg', 'width': 200, 'height': 100},
            {'id': 139, 'file_name': '000000000139.jpg', 'width': 100, 'height': 50},
        ],
        'annotations': [
            {'id': 1, 'image_id': 724, 'category_id': 18, 'bbox': [40, 10, 80, 40]},
            {'id': 2, 'image_id': 139, 'category_id': 90, 'bbox': [25, 10, 50, 20]},
        ],
        'categories': [{'id': 18, 'name': 'dog'}, {'id': 90, 'name': 'toothbrush'}],
    }
    for a in ground_truth['annotations']:
        a.update(area=a['bbox'][2] * a['bbox'][3], iscrowd=0)
    with open('annotations/instances_val2017.json', 'w') as f:
        json.dump(ground_truth, f)
    detected = {  # file: (height, width, boxes [ymin, xmin, ymax, xmax], scores, labels 1..2)
        '/photos/000000000724.jpg': (
            100,
            200,
            [[0.1, 0.2, 0.5, 0.6], [-0.1, 0.9, 0.3, 1.2]],
            [0.9, 0.4],
            [1, 2],
        ),
        'photos/000000000139.jpg': (50, 100, [[0.2, 0.25, 0.6, 0.75]], [0.7], [2]),
    }
    images = [
        detection.image_record(
            path,
            'out.jpg',
            types.SimpleNamespace(height=height, width=width),
            {'boxes': np.float32(boxes), 'scores': np.float32(scores), 'classes': labels},
            names,
            (18, 90),
        )
        for path, (height, width, boxes, scores, labels) in detected.items()
    ]
    with open('detections/detections.json', 'w') as f:
        json.dump({'images': images, 'videos': []}, f)
    exec(readme_python_block('### detections.json as COCO results'), {})
    with open('coco_results.json') as f:
        results = json.load(f)
    # By hand: x = xmin * width, w = (xmax - xmin) * width; the second box clipped to the image.
    expected = [
        (724, 18, [40, 10, 80, 40], 0.9),
        (724, 90, [180, 0, 20, 30], 0.4),
        (139, 90, [25, 10, 50, 20], 0.7),
    ]
    assert [(r['image_id'], r['category_id']) for r in results] == [e[:2] for e in expected]
    np.testing.assert_allclose([r['bbox'] for r in results], [e[2] for e in expected], atol=1e-4)
    np.testing.assert_allclose([r['score'] for r in results], [e[3] for e in expected], atol=1e-6)
    gt = COCO('annotations/instances_val2017.json')
    evaluator = COCOeval(gt, gt.loadRes('coco_results.json'), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    # AP50: each object found, the false positive ranked below.
    assert evaluator.stats[1] == pytest.approx(1.0)
