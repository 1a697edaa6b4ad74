"""The 80 COCO 2017 category names with their real ids (15 contain a space), plus names with a
slash, a collision and non-ASCII letters: convert (tf_convert_data.py), train one step
(train_ssd_network.py), evaluate with COCO only and with VOC + COCO (per-class files, plots),
score the COCO results offline."""

import hashlib
import json
import os

import pytest

from evaluation import evaluate
from evaluation import scoring
from model import card as card_lib
from model import checkpoints
from tests import data_fixtures as fx
from tests import script_server
from tests.conftest import TINY_TRAIN_FLAGS, script_env
from tf_extended import file_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COCO_2017 = (
    (1, 'person'),
    (2, 'bicycle'),
    (3, 'car'),
    (4, 'motorcycle'),
    (5, 'airplane'),
    (6, 'bus'),
    (7, 'train'),
    (8, 'truck'),
    (9, 'boat'),
    (10, 'traffic light'),
    (11, 'fire hydrant'),
    (13, 'stop sign'),
    (14, 'parking meter'),
    (15, 'bench'),
    (16, 'bird'),
    (17, 'cat'),
    (18, 'dog'),
    (19, 'horse'),
    (20, 'sheep'),
    (21, 'cow'),
    (22, 'elephant'),
    (23, 'bear'),
    (24, 'zebra'),
    (25, 'giraffe'),
    (27, 'backpack'),
    (28, 'umbrella'),
    (31, 'handbag'),
    (32, 'tie'),
    (33, 'suitcase'),
    (34, 'frisbee'),
    (35, 'skis'),
    (36, 'snowboard'),
    (37, 'sports ball'),
    (38, 'kite'),
    (39, 'baseball bat'),
    (40, 'baseball glove'),
    (41, 'skateboard'),
    (42, 'surfboard'),
    (43, 'tennis racket'),
    (44, 'bottle'),
    (46, 'wine glass'),
    (47, 'cup'),
    (48, 'fork'),
    (49, 'knife'),
    (50, 'spoon'),
    (51, 'bowl'),
    (52, 'banana'),
    (53, 'apple'),
    (54, 'sandwich'),
    (55, 'orange'),
    (56, 'broccoli'),
    (57, 'carrot'),
    (58, 'hot dog'),
    (59, 'pizza'),
    (60, 'donut'),
    (61, 'cake'),
    (62, 'chair'),
    (63, 'couch'),
    (64, 'potted plant'),
    (65, 'bed'),
    (67, 'dining table'),
    (70, 'toilet'),
    (72, 'tv'),
    (73, 'laptop'),
    (74, 'mouse'),
    (75, 'remote'),
    (76, 'keyboard'),
    (77, 'cell phone'),
    (78, 'microwave'),
    (79, 'oven'),
    (80, 'toaster'),
    (81, 'sink'),
    (82, 'refrigerator'),
    (84, 'book'),
    (85, 'clock'),
    (86, 'vase'),
    (87, 'scissors'),
    (88, 'teddy bear'),
    (89, 'hair drier'),
    (90, 'toothbrush'),
)
EXTRA = ((91, 'a/b'), (92, 'a_b'), (93, 'Straße café'))


def _ann(ann_id, image_id, category_id, bbox, iscrowd=0):
    return fx.coco_annotation(ann_id, image_id, category_id, bbox, bbox[2] * bbox[3] * 0.8, iscrowd)


def _run(*args):
    proc = script_server.run(args, ROOT, script_env(), 900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_names')
    assert len(COCO_2017) == 80 and sum(' ' in name for _, name in COCO_2017) == 15
    categories = [{'id': i, 'name': n, 'supercategory': 'x'} for i, n in COCO_2017 + EXTRA]
    images = [(f'{i:012d}.jpg', i, fx.smooth_image(72, 96, i), (96, 72)) for i in (1, 2, 3, 4)]
    anns = [
        _ann(1, 1, 10, [10, 8, 30, 50]),
        _ann(2, 1, 91, [50, 10, 40, 40]),
        _ann(3, 1, 1, [0, 0, 96, 72], iscrowd=1),
        _ann(4, 2, 11, [20, 20, 50, 40]),
        _ann(5, 2, 93, [5, 5, 20, 20]),
        _ann(6, 2, 92, [40, 30, 50, 40]),
        _ann(7, 3, 1, [30, 10, 30, 60]),
        _ann(8, 3, 10, [60, 30, 30, 30]),
    ]  # image 4: empty
    ann_path, img_dir = fx.write_coco(str(root), images, categories, anns)
    records = str(root / 'records')
    _run(
        'tf_convert_data.py',
        '--dataset_name=coco',
        f'--annotations_file={ann_path}',
        f'--dataset_dir={img_dir}',
        f'--output_dir={records}',
        '--output_name=coco',
        '--num_workers=1',
    )
    train_dir = str(root / 'train')
    _run(
        'train_ssd_network.py',
        f'--train_dir={train_dir}',
        '--dataset_name=custom',
        '--dataset_split_name=coco',
        f'--dataset_dir={records}',
        *TINY_TRAIN_FLAGS,
        '--max_number_of_steps=1',
    )
    return {'root': root, 'ann_path': ann_path, 'records': records, 'train_dir': train_dir}


def _evaluate(trained, metrics, name):
    card = card_lib.load(os.path.join(trained['train_dir'], card_lib.CARD_FILE))
    settings = evaluate.EvalSettings(
        card=card,
        dataset_name='custom',
        dataset_split_name='coco',
        dataset_dir=trained['records'],
        batch_size=4,
        metrics=metrics,
        num_threads=2,
    )
    prefix = checkpoints.latest_in_directory(trained['train_dir'])
    eval_dir = str(trained['root'] / name)
    result = evaluate.evaluate_checkpoint(settings, prefix, eval_dir, log=lambda _: None)
    return eval_dir, result


def test_metadata_records_the_annotation_file(trained):
    with open(os.path.join(trained['records'], 'coco_metadata.json')) as f:
        meta = json.load(f)
    source = meta['source']
    assert source['annotations_file'] == os.path.abspath(trained['ann_path'])
    with open(trained['ann_path'], 'rb') as f:
        data = f.read()
    assert source['annotations_size'] == len(data)
    assert source['annotations_sha256'] == hashlib.sha256(data).hexdigest()
    assert [(c['coco_category_id'], c['name']) for c in meta['classes']] == list(COCO_2017 + EXTRA)


def test_card_and_coco_evaluation_keep_the_real_names(trained):
    card = card_lib.load(os.path.join(trained['train_dir'], card_lib.CARD_FILE))
    assert card.class_names == tuple(n for _, n in COCO_2017 + EXTRA)
    assert card.category_ids == tuple(i for i, _ in COCO_2017 + EXTRA)  # what detect writes
    eval_dir, result = _evaluate(trained, ('coco',), 'eval_coco')
    rows = result.summary['classes']
    assert [(r['label'], r['name']) for r in rows] == list(COCO_2017 + EXTRA)
    assert result.voc is None and set(result.class_ap) == {'coco'}
    assert not [n for n in os.listdir(eval_dir) if n.startswith('comp4_') or n == 'pr_curves']
    # Present classes have an AP, absent ones None; the real names key everything.
    assert {n for n, ap in result.class_ap['coco'].items() if ap is not None} == {
        'traffic light',
        'fire hydrant',
        'a/b',
        'a_b',
        'Straße café',
        'person',
    }
    # score_detections.py on the written results and the original file: the same numbers.
    offline, names = scoring.score_coco_results(
        os.path.join(eval_dir, 'coco_detections.json'), trained['ann_path']
    )
    assert offline.metrics == result.coco and offline.class_ap == result.class_ap['coco']
    assert list(names.items()) == list(COCO_2017 + EXTRA)
    with open(os.path.join(eval_dir, 'results.txt'), encoding='utf-8') as f:
        table = f.read()
    assert 'Straße café' in table and 'hair drier' in table


def test_voc_metrics_write_per_class_files_and_plots(trained):
    eval_dir, result = _evaluate(trained, ('voc07', 'voc12', 'coco'), 'eval_voc')
    stems = file_names.safe_file_names(n for _, n in COCO_2017 + EXTRA)
    assert (stems['a/b'], stems['a_b'], stems['traffic light']) == ('a_b', 'a_b_2', 'traffic_light')
    written = sorted(n for n in os.listdir(eval_dir) if n.startswith('comp4_det_coco_'))
    assert written == sorted(f'comp4_det_coco_{s}.txt' for s in stems.values())
    plots = sorted(os.listdir(os.path.join(eval_dir, 'pr_curves')))
    present = [c.name for c in result.voc.classes if not c.absent]
    assert sorted(present) == sorted(
        ['traffic light', 'fire hydrant', 'a/b', 'a_b', 'Straße café', 'person']
    )
    assert plots == sorted(f'pr_{stems[n]}.png' for n in present)
    rows = {r['name']: r for r in result.summary['classes']}
    assert rows['person']['num_gt'] == 2 and rows['person']['num_difficult'] == 1  # the crowd
    assert rows['a_b']['file_stem'] == 'a_b_2' and rows['a/b']['label'] == 91
    assert result.metrics['voc07'] is not None and result.metrics['coco'] is not None
