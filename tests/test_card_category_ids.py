"""The model card's `category_ids` (COCO category ids of contiguous labels): checked and kept
through the card's JSON, written by training from COCO records' metadata and by the PyTorch
converter for torchvision's COCO SSD, and written by detection as each row's `category_id`."""

import json
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf

from converters import checkpoint_io
from converters import pytorch_convert
from converters import pytorch_ssd
from datasets import dataset_factory
from inference import detection
from model import card as card_lib
from model import cli
from tests import data_fixtures
from tests import pytorch_fixtures
from training import trainer

NAMES = ('person', 'stop sign', 'toothbrush')
IDS = (1, 13, 90)


def _no_log(line):
    pass


def _card(**changes):
    return card_lib.from_registry('ssd_300_mobilenet', class_names=NAMES).replace(**changes)


@pytest.mark.parametrize('ids', [IDS, None])
def test_round_trip(tmp_path, ids):
    path = card_lib.write(str(tmp_path / card_lib.CARD_FILE), _card(category_ids=ids))
    with open(path, encoding='utf-8') as f:
        assert json.load(f)['category_ids'] == (None if ids is None else list(ids))
    loaded = card_lib.load(path)
    assert loaded.category_ids == ids and loaded == _card(category_ids=ids)
    # Every copy of a card: replace (export, OpenVINO) and with_params keep them.
    assert loaded.replace(compute_dtype='bfloat16').category_ids == ids
    assert loaded.with_params(depth_multiplier=0.5).category_ids == ids


def test_a_card_written_before_the_field_has_none(tmp_path):
    meta = _card(category_ids=IDS).to_dict()
    del meta['category_ids']
    path = tmp_path / card_lib.EXPORT_METADATA_FILE
    path.write_text(json.dumps(meta))
    assert card_lib.load(str(path)).category_ids is None


@pytest.mark.parametrize(
    'ids,message',
    [
        ([1, 13], r'category_ids has 2 ids for 3 classes'),
        ([1, 13, 13], r'category_ids repeat 13, expected one id per class'),
        ([1, -13, 90], r'category_ids holds -13, expected integers >= 0'),
        ([1, 13.0, 90], r'category_ids holds 13.0, expected integers >= 0'),
        ([1, '13', 90], r"category_ids holds '13', expected integers >= 0"),
        ([True, 13, 90], r'category_ids holds True, expected integers >= 0'),
        (13, r'category_ids is 13, expected a list of integers'),
        ('abc', r"category_ids is 'abc', expected a list of integers"),
    ],
)
def test_bad_ids_are_refused_naming_the_file(tmp_path, ids, message):
    meta = _card().to_dict()
    meta['category_ids'] = ids
    path = tmp_path / card_lib.CARD_FILE
    path.write_text(json.dumps(meta))
    with pytest.raises(
        card_lib.CardError, match=f'^{re.escape(str(path))}: not a valid model card: {message}'
    ):
        card_lib.load(str(path))


def test_overriding_the_class_count_drops_the_ids_another_net_keeps_them():
    card = _card(category_ids=IDS)
    flags = cli.ModelFlags(override_model_card=True, model_name='ssd_300_vgg')
    assert cli.apply_structure_flags(card, flags, 'model.json', _no_log).category_ids == IDS
    flags = cli.ModelFlags(override_model_card=True, num_classes=6)
    assert cli.apply_structure_flags(card, flags, 'model.json', _no_log).category_ids is None


def _coco_records(tmp_path):
    """Records of a COCO file whose categories are listed out of id order: labels 1..3 are
    person (id 1), stop sign (13), toothbrush (90)."""
    categories = [
        {'id': 90, 'name': 'toothbrush'},
        {'id': 1, 'name': 'person'},
        {'id': 13, 'name': 'stop sign'},
    ]
    image = ('a.jpg', 5, data_fixtures.smooth_image(32, 48), (48, 32))
    annotation = {'id': 1, 'image_id': 5, 'category_id': 13, 'bbox': [4, 4, 20, 10], 'iscrowd': 0}
    ann_path, img_dir = data_fixtures.write_coco(str(tmp_path), [image], categories, [annotation])
    data_fixtures.convert_coco(ann_path, img_dir, str(tmp_path / 'records'))
    return dataset_factory.get_dataset('custom', 'coco', str(tmp_path / 'records'))


def test_training_card_takes_the_records_ids_and_resuming_keeps_them(tmp_path):
    dataset = _coco_records(tmp_path)
    settings = trainer.TrainSettings(train_dir=str(tmp_path / 'train'))
    card, existing = trainer.resolve_model_card(settings, dataset, log=_no_log)
    assert existing is None and card.class_names == NAMES and card.category_ids == IDS
    os.makedirs(settings.train_dir)
    card_lib.write(os.path.join(settings.train_dir, card_lib.CARD_FILE), card)
    resumed, existing = trainer.resolve_model_card(settings, dataset, log=_no_log)
    assert existing and resumed.category_ids == IDS


def _checkpoint(folder):
    """A checkpoint (one variable) in `folder`, the card's checkpoint when fine-tuning."""
    with tf.Graph().as_default():
        w = tf.compat.v1.get_variable('w', initializer=np.float32(1))
        with tf.compat.v1.Session() as sess:
            sess.run(w.initializer)
            tf.compat.v1.train.Saver([w]).save(sess, os.path.join(folder, 'model.ckpt'), 1)


def _dataset(tmp_path, class_names, metadata):
    return types.SimpleNamespace(
        name='custom',
        split_name='train',
        dataset_dir=str(tmp_path),
        num_samples=3,
        num_classes=len(class_names) + 1,
        class_names=tuple(class_names),
        metadata=metadata,
    )


def test_fine_tuning_keeps_the_ids_with_the_source_class_names_only(tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    _checkpoint(str(source))
    card_lib.write(str(source / card_lib.CARD_FILE), _card(category_ids=IDS))
    settings = trainer.TrainSettings(train_dir=str(tmp_path / 'ft'), checkpoint_path=str(source))
    # Records without metadata (unnamed classes): the model's classes, names and ids.
    unnamed = _dataset(tmp_path, card_lib.default_class_names(4), None)
    card = trainer.resolve_model_card(settings, unnamed, log=_no_log)[0]
    assert card.class_names == NAMES and card.category_ids == IDS
    # Records naming other classes, without ids: none.
    other = {'classes': [{'id': i, 'name': n} for i, n in enumerate(('a', 'b', 'c'), 1)]}
    named = _dataset(tmp_path, ('a', 'b', 'c'), other)
    card = trainer.resolve_model_card(settings, named, log=_no_log)[0]
    assert card.class_names == ('a', 'b', 'c') and card.category_ids is None


DETECTIONS = {
    'boxes': np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32),
    'scores': np.array([0.9, 0.4], np.float32),
    'classes': np.array([2, 3], np.int32),
}


def test_detection_rows_carry_the_category_id_where_the_card_has_ids():
    image = types.SimpleNamespace(height=100, width=200)
    record = detection.image_record('a.jpg', 'a_det.jpg', image, DETECTIONS, NAMES, IDS)
    rows = record['detections']
    assert [(r['label'], r['label_id'], r['category_id']) for r in rows] == [
        ('stop sign', 2, 13),
        ('toothbrush', 3, 90),
    ]
    assert rows[0]['xmin'] == pytest.approx(40) and rows[0]['ymax'] == pytest.approx(50)
    without = detection.pixel_detections(DETECTIONS, 100, 200, NAMES)
    assert [{k: v for k, v in r.items() if k != 'category_id'} for r in rows] == without
    assert not any('category_id' in r for r in without)


@pytest.fixture(scope='module')
def torchvision_sd():
    return pytorch_fixtures.torchvision_ssd300(pytorch_fixtures.SEED)


@pytest.fixture(scope='module')
def torchvision_pth(torchvision_sd, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('torchvision') / 'ssd300_vgg16_coco.pth')
    pytorch_fixtures.write_pth(torchvision_sd, path)
    return path


class _Written(Exception):
    """Stops a conversion once the checkpoint writer has the card to write beside it."""


def _converted_card(pth, tmp_path, monkeypatch, **kwargs):
    """The card `pytorch_convert.convert` hands the checkpoint writer to write (the writer and
    its net build are skipped: seconds)."""
    cards = []

    def capture(*args, sidecar_files, **_):
        cards.extend(card_lib.from_dict(json.loads(text)) for text in sidecar_files.values())
        raise _Written()

    monkeypatch.setattr(checkpoint_io, 'write_checkpoint', capture)
    with pytest.raises(_Written):
        pytorch_convert.convert(pth, str(tmp_path / 'm.ckpt'), log=lambda *_: None, **kwargs)
    (card,) = cards
    return card


def test_torchvision_contiguous_conversion_writes_the_kept_coco_ids(
    torchvision_pth, tmp_path, monkeypatch
):
    card = _converted_card(torchvision_pth, tmp_path, monkeypatch, class_order='contiguous')
    used = [i for i, n in enumerate(pytorch_ssd.TORCHVISION_COCO_CATEGORIES) if n != 'N/A'][1:]
    assert len(used) == 80 and card.category_ids == tuple(used)
    for label, coco_id, name in ((1, 1, 'person'), (12, 13, 'stop sign'), (80, 90, 'toothbrush')):
        assert (card.category_ids[label - 1], card.class_names[label - 1]) == (coco_id, name)


def test_a_labels_file_of_other_names_drops_the_ids(torchvision_pth, tmp_path, monkeypatch):
    """--labels_file naming other classes (a model trained on them): torchvision's ids do not
    apply."""
    labels = tmp_path / 'labels.txt'
    labels.write_text(''.join(f'thing {i}\n' for i in range(80)))
    card = _converted_card(
        torchvision_pth, tmp_path, monkeypatch, class_order='contiguous', labels_file=str(labels)
    )
    assert card.class_names[11] == 'thing 11' and card.category_ids is None
    # A labels file that restates the layout's own names keeps them.
    layout = pytorch_ssd.LAYOUTS['torchvision_ssd300']
    _, names = pytorch_ssd.class_order_channels(layout, 91, 'contiguous')
    labels.write_text(''.join(f'{name}\n' for name in names))
    card = _converted_card(
        torchvision_pth, tmp_path, monkeypatch, class_order='contiguous', labels_file=str(labels)
    )
    assert card.category_ids[11] == 13 and card.class_names[11] == 'stop sign'


def test_torchvision_source_order_ids_are_the_labels(torchvision_sd):
    layout = pytorch_ssd.LAYOUTS['torchvision_ssd300']
    conversion = pytorch_ssd.convert_state_dict(torchvision_sd, layout, class_order='source')
    assert conversion.category_ids == tuple(range(1, 91))
    # Other heads have no known ids (ssd.pytorch's VOC).
    voc = pytorch_fixtures.ssd_pytorch_ssd300(pytorch_fixtures.SEED)
    layout = pytorch_ssd.LAYOUTS['ssd_pytorch_ssd300']
    assert pytorch_ssd.convert_state_dict(voc, layout).category_ids is None
