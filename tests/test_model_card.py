"""The model card (model/card.py) and how the shared model flags meet it (model/cli.py)."""

import json
import os
import types

import numpy as np
import pytest

from model import card as card_lib
from model import cli
from nets import ssd_params

NAMES = ('red thing', 'blue/green', 'zürich')


def _card(**changes):
    card = card_lib.from_registry('ssd_300_mobilenet', class_names=NAMES, depth_multiplier=0.5)
    return card.with_detection(select_threshold=0.2, top_k=100).replace(
        card_id='abcdef01' * 4, **changes
    )


def test_round_trip_keeps_every_field(tmp_path):
    card = _card(provenance={'dataset': {'name': 'custom', 'num_examples': 3}})
    path = card_lib.write(str(tmp_path / card_lib.CARD_FILE), card)
    with open(path, encoding='utf-8') as f:
        meta = json.load(f)
    assert meta['format_version'] == card_lib.FORMAT_VERSION
    assert meta['num_classes'] == 4 and meta['class_names'] == list(NAMES)
    assert meta['ssd_params']['depth_multiplier'] == 0.5
    assert meta['anchor_size_preset'] == 'mobilenet_ssd'
    loaded = card_lib.load(path)
    assert loaded == card and loaded.provenance == card.provenance
    assert loaded.params == card.params and loaded.detection.top_k == 100
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]  # atomic: no temp left


def test_newer_format_and_broken_files_are_clear_errors(tmp_path):
    path = tmp_path / 'model.json'
    meta = _card().to_dict()
    meta['format_version'] = card_lib.FORMAT_VERSION + 1
    path.write_text(json.dumps(meta))
    with pytest.raises(card_lib.CardError, match='format_version 2.*update the project'):
        card_lib.load(str(path))
    path.write_text('{"model_name": "ssd_300_vgg", ')
    with pytest.raises(
        card_lib.CardError,
        match='model.json: the model card is not valid JSON',
    ):
        card_lib.load(str(path))
    del meta['ssd_params']
    meta['format_version'] = 1
    path.write_text(json.dumps(meta))
    with pytest.raises(card_lib.CardError, match='not a valid model card'):
        card_lib.load(str(path))


def _set(meta, dotted, value):
    *parents, key = dotted.split('.')
    for parent in parents:
        meta = meta[parent]
    meta[key] = value


@pytest.mark.parametrize(
    'field,value,message',
    [
        ('class_names', [1, 2, 3], r'class_names is \[1, 2, 3\], expected a list of class names'),
        ('class_names', 'abc', r"class_names is 'abc', expected a list"),  # 3 one-letter names
        ('class_names', ['a', '', 'c'], r"class name '' is empty; the model card refuses it"),
        ('normalisation.scale', -1, r'normalisation.scale is -1, expected a number > 0'),
        ('normalisation.mean_rgb', [1, 2], r'normalisation.mean_rgb is \[1, 2\], expected 3'),
        ('normalisation', [], r'normalisation is \[\], expected a JSON object'),
        ('card_id', 7, r'card_id is 7, expected 32 lowercase hex digits as the project writes'),
        # The watcher names folders after the id: this one took its results out of --eval_dir.
        (
            'card_id',
            '/../../.',
            r"card_id is '/../../.', expected 32 lowercase hex digits as the project writes "
            r"them, or '' \(no id\)\.$",
        ),
        ('card_id', 'A' * 32, r"card_id is 'AAAA"),
        ('provenance', [1], r'provenance is \[1\], expected a JSON object'),
        ('detection.select_threshold', 'x', r"select_threshold \(--select_threshold\) is 'x', e"),
        ('detection.nms_threshold', 7.0, r'nms_threshold \(--nms_threshold\) is 7.0, expected a n'),
        # An int beyond float64's range: an OverflowError traceback before.
        (
            'normalisation.scale',
            10**400,
            r'normalisation.scale is 1000000.*, expected a number > 0',
        ),
        ('detection.keep_top_k', 10**15, r'keep_top_k \(--keep_top_k\) is 1000000000000000, e'),
        ('detection.top_k', 2.5, r'top_k \(--top_k\) is 2.5, expected an integer'),
        ('detection.clip', 1, r'clip \(--clip\) is 1, expected true or false'),
        ('detection', [], r'its detection settings are not a JSON object'),
        # Caffe's name for select_threshold: named, not a TypeError's text.
        (
            'detection.confidence_threshold',
            0.3,
            r"unknown detection setting\(s\) \['confidence_threshold'\]; known: \['select_",
        ),
        (
            'ssd_params.img_shape',
            [10**6, 10**6],
            r'SSD parameter img_shape is \(1000000, 1000000\)',
        ),
        ('ssd_params.num_classes', 1, r'SSD parameter num_classes is 1, expected an integer in'),
        ('ssd_params.feat_shapes', [[10**4, 10**4]] * 6, r'feat_shapes is .*at most img_shape'),
        (
            'ssd_params.feat_shapes',
            [[19, 19]] * 5,
            r'feat_shapes is .*expected 6 \(height, width\)',
        ),
        ('ssd_params.feat_layers', ['a'] * 6, r"feat_layers is \('a', .*expected \('conv11'"),
        ('ssd_params.extra_layers', [['x', 10**9, 10**9]], r'SSD parameter extra_layers is'),
        ('ssd_params.anchor_sizes', [[-1, None]] * 6, r'anchor_sizes is .*pairs of numbers > 0'),
        ('ssd_params.anchor_ratios', [[2, 0]] * 6, r'anchor_ratios is .*numbers > 0'),
        ('ssd_params.anchor_steps', [8] * 5, r'anchor_steps is .*expected None, or 6 numbers'),
        ('ssd_params.anchor_clip', 'yes', r"anchor_clip is 'yes', expected one of"),
        ('ssd_params.anchor_int_sizes', 0, r'anchor_int_sizes is 0, expected true or false'),
        ('ssd_params.prior_scaling', [0.1, 0.1, 0.2, float('inf')], r'prior_scaling is .*inf'),
        ('ssd_params.depth_multiplier', 0, r'depth_multiplier is 0, expected a number in \(0, 4\]'),
        ('ssd_params.batch_norm_decay', 2, r'batch_norm_decay is 2, expected a number in \[0, 1\]'),
        # Just beyond a range's end (the detection settings' ends are accepted:
        # test_detection_settings_at_their_range_ends_replace_the_cards).
        ('normalisation.scale', 0, r'normalisation.scale is 0, expected a number > 0'),
        ('normalisation.mean_rgb', [1, 2, 3, 4], r'normalisation.mean_rgb is \[1, 2, 3, 4\], e'),
        ('detection.select_threshold', 1.01, r'select_threshold \(--select_threshold\) is 1.01'),
        ('detection.select_threshold', -0.01, r'select_threshold \(--select_threshold\) is -0.01'),
        ('detection.nms_threshold', -0.01, r'nms_threshold \(--nms_threshold\) is -0.01, exp'),
        ('detection.top_k', 100_001, r'top_k \(--top_k\) is 100001, expected an integer up to'),
        ('detection.keep_top_k', -100_001, r'keep_top_k \(--keep_top_k\) is -100001, expected'),
        ('ssd_params.img_shape', [0, 300], r'SSD parameter img_shape is \(0, 300\), expected'),
        ('ssd_params.anchor_sizes', [[None, 60]] * 6, r'anchor_sizes is .*pairs of numbers > 0'),
        ('ssd_params.anchor_ratios', [[2] * 33] * 6, r'anchor_ratios is .*at most 32 numbers'),
        ('ssd_params.anchor_offset', 1.5, r'anchor_offset is 1.5, expected a number in \[0, 1\]'),
        ('ssd_params.prior_scaling', [0.1, 0.1, 0.2, 0], r'prior_scaling is .*4 numbers > 0'),
        ('ssd_params.prior_scaling', [0.1, 0.1, 0.2, 0.2, 0.2], r'prior_scaling is .*4 numbers'),
        ('ssd_params.batch_norm_epsilon', 0, r'batch_norm_epsilon is 0, expected a number in \(0'),
    ],
)
def test_card_values_are_checked_naming_the_file_and_field(tmp_path, field, value, message):
    """Cards arrive with exported models and checkpoints from anywhere: integer class names were
    a TypeError traceback in detect and export, a string one letter names, and feat_shapes of
    1e5 x 1e5 would have asked numpy for about 80 GB of anchors."""
    path = tmp_path / 'model.json'
    meta = _card().to_dict()
    _set(meta, field, value)
    path.write_text(json.dumps(meta))
    with pytest.raises(card_lib.CardError, match=r'model.json: .*' + message) as info:
        card_lib.load(str(path))
    assert '\n' not in str(info.value) and len(str(info.value)) < 500


def test_cards_are_checked_where_they_are_made():
    """--depth_multiplier=5 or a dataset's 300-character class name made a card that training
    wrote and every later step (its own resume too) refused."""
    with pytest.raises(card_lib.CardError, match=r'depth_multiplier is 5.0, expected a number in'):
        card_lib.from_registry('ssd_300_mobilenet', 3, depth_multiplier=5.0)
    with pytest.raises(card_lib.CardError, match=r"class name 'xxx.* has 300 characters, more"):
        card_lib.from_registry('ssd_300_mobilenet', class_names=('a', 'x' * 300))


def test_too_many_anchors_are_refused():
    base = card_lib.from_registry('ssd_300_vgg', 21).params
    params = base._replace(img_shape=(4096, 4096), feat_shapes=((4096, 4096),) * 6)
    with pytest.raises(ValueError, match=r'make 503316480 anchors, more than 2000000'):
        ssd_params.check_params(params, base)


def test_too_many_anchors_are_refused_from_one_above_the_bound():
    """VGG300 has 4, 6, 6, 6, 4, 4 anchors per cell (1 + 1 + 2 per ratio); the bound counts them."""
    base = card_lib.from_registry('ssd_300_vgg', 21).params
    rest = ((1, 1),) * 5  # 26 anchors
    at_most = base._replace(img_shape=(4096, 4096), feat_shapes=((499, 1000),) + rest)
    ssd_params.check_params(at_most, base)  # 1996026 anchors
    above = at_most._replace(feat_shapes=((500, 1000),) + rest)
    with pytest.raises(ValueError, match=r'make 2000026 anchors, more than 2000000'):
        ssd_params.check_params(above, base)


def test_feature_maps_are_at_most_the_input_on_each_axis():
    base = card_lib.from_registry('ssd_300_mobilenet', 3).params
    rest = ((1, 1),) * 5
    params = base._replace(img_shape=(300, 500), anchor_steps=None)
    ssd_params.check_params(params._replace(feat_shapes=((300, 500),) + rest), base)
    for too_big in ((301, 1), (1, 501)):
        with pytest.raises(ValueError, match=r'feat_shapes is .*at most img_shape'):
            ssd_params.check_params(params._replace(feat_shapes=(too_big,) + rest), base)


def test_a_non_square_card_keeps_its_height_and_width(tmp_path):
    card = card_lib.from_registry(
        'ssd_300_mobilenet',
        3,
        img_shape=(300, 500),
        feat_shapes=((19, 32), (10, 16), (5, 8), (3, 4), (2, 2), (1, 1)),
        anchor_steps=None,
    )
    assert card.input_shape == (300, 500)
    meta = card.to_dict()
    assert (meta['input']['height'], meta['input']['width']) == (300, 500)
    assert meta['ssd_params']['img_shape'] == [300, 500]
    path = card_lib.write(str(tmp_path / card_lib.CARD_FILE), card)
    assert card_lib.load(path) == card
    assert ', input 300x500, ' in card_lib.describe(card)


def test_a_card_made_in_code_is_checked_as_one_read_from_a_file():
    """Cards the scripts make from flags (`with_params`, `replace`) meet the file's checks."""
    with pytest.raises(card_lib.CardError, match=r'^2 class names for a model with 3 classes'):
        _card().replace(class_names=NAMES[:2])
    with pytest.raises(
        card_lib.CardError, match=r'SSD parameter prior_scaling is \(0.1, 0.1, 0.2, 0'
    ):
        _card().with_params(prior_scaling=(0.1, 0.1, 0.2, 0.0))
    with pytest.raises(card_lib.CardError, match=r'mean_rgb \(1.0, 2.0, 3.0, 4.0\) is not 3 n'):
        _card().replace(mean_rgb=(1.0, 2.0, 3.0, 4.0))
    with pytest.raises(card_lib.CardError, match=r'^scale 0.0 is not a number > 0'):
        _card().replace(scale=0.0)


def test_detection_settings_at_their_range_ends_replace_the_cards(tmp_path):
    """0 is a setting, not 'not given': --select_threshold=0 keeps every score, --top_k=0 and
    --keep_top_k=0 every candidate (Caffe's <= 0), --nms_threshold=0 suppresses any overlap."""
    card = _card().replace(detection=card_lib.DetectionSettings(clip=True))
    card = card.with_detection(
        select_threshold=0.0, nms_threshold=0.0, top_k=0, keep_top_k=100_000, clip=False
    )
    assert card.detection == card_lib.DetectionSettings(0.0, 0.0, 0, 100_000, False)
    ends = card.with_detection(select_threshold=1.0, nms_threshold=1.0, top_k=-100_000)
    assert ends.detection == card_lib.DetectionSettings(1.0, 1.0, -100_000, 100_000, False)
    path = card_lib.write(str(tmp_path / card_lib.CARD_FILE), ends)
    assert card_lib.load(path).detection == ends.detection


def test_export_metadata_must_give_the_anchors_and_classes_the_model_scores():
    meta = dict(_card().to_dict(), anchors={'count': 1917})
    card = card_lib.from_dict(meta)
    for agrees in ([1, 1917, 4], [None, -1, 4], [1, 1917, None]):
        card_lib.check_model_outputs(meta, 'e/metadata.json', 'e/m.pb', agrees, card)
    for scored in ([1, 1917, 5], [1, 1916, 4]):
        with pytest.raises(card_lib.ModelMismatchError) as info:
            card_lib.check_model_outputs(meta, 'e/metadata.json', 'e/m.pb', scored, card)
        assert f'the model scores {scored[1]} anchors in {scored[2]} classes (the ' in str(
            info.value
        )
        assert 'where that metadata.json has 1917 anchors and 4 classes' in str(info.value)


@pytest.mark.parametrize(
    'field,value,differ',
    [
        ('card_id', 'f' * 32, 'card_id'),
        ('model_name', 'ssd_300_vgg', 'model_name'),
        ('num_classes', 5, 'num_classes'),
        ('ssd_params.depth_multiplier', 1.0, 'ssd_params'),
        ('input.width', 301, 'input size'),
        ('normalisation.scale', 1.0, 'normalisation'),
        ('export.time', '2026-01-02T00:00:00+00:00', 'export time'),
        ('export.checkpoint.path', 'other/model.ckpt-1', 'exported checkpoint'),
    ],
)
def test_an_embedded_card_of_another_export_is_refused(field, value, differ):
    """What tells two exports apart differs; class names and detection settings (a user may
    edit them in the metadata.json) do not."""
    export = {'time': '2026-01-01T00:00:00+00:00', 'checkpoint': {'path': 'train/model.ckpt-9'}}
    meta = dict(_card().to_dict(), export=export)
    edited = json.loads(json.dumps(meta))
    edited['class_names'] = ['a', 'b', 'c']
    edited['detection']['top_k'] = 7
    card_lib.check_same_export(meta, 'e/metadata.json', edited, 'e/m.xml')
    other = json.loads(json.dumps(meta))
    _set(other, field, value)
    with pytest.raises(card_lib.ModelMismatchError) as info:
        card_lib.check_same_export(meta, 'e/metadata.json', other, 'e/m.xml')
    assert f'is of another export (they differ in {differ}); ' in str(info.value)


def test_an_embedded_card_without_an_export_time_is_compared_without_it():
    """A frozen graph's or TFLite model's card has none (`embedded_card.embeddable`)."""
    export = {'time': '2026-01-01T00:00:00+00:00', 'checkpoint': {'path': 'train/model.ckpt-9'}}
    meta = dict(_card().to_dict(), export=export)
    embedded = dict(meta, export={'checkpoint': export['checkpoint']})
    card_lib.check_same_export(meta, 'e/metadata.json', embedded, 'e/m.pb')


def test_detection_flags_are_checked_with_the_flag_named():
    with pytest.raises(card_lib.CardError, match=r'nms_threshold \(--nms_threshold\) is 45'):
        _card().with_detection(nms_threshold=45)
    assert _card().with_detection(top_k=-1, keep_top_k=0).detection.top_k == -1  # Caffe: all


def test_find_for_checkpoint_prefers_the_most_specific_file(tmp_path):
    prefix = str(tmp_path / 'model.ckpt-10')
    open(prefix + '.index', 'w').close()
    assert card_lib.find_for_checkpoint(prefix) is None
    card_lib.write(str(tmp_path / 'model.json'), _card())
    for path in (prefix, prefix + '.index', prefix + '.data-00000-of-00001', str(tmp_path)):
        assert card_lib.find_for_checkpoint(path) == str(tmp_path / 'model.json')
    card_lib.write(prefix + '.model.json', _card())
    assert card_lib.find_for_checkpoint(prefix + '.index') == prefix + '.model.json'


def test_find_for_a_converters_folder_is_its_checkpoints_card(tmp_path):
    """A converter's folder has no model.json: its state file names the checkpoint, whose card
    is beside it (the folder passed as --checkpoint_path ran with the defaults instead)."""
    prefix = str(tmp_path / 'a')
    for suffix in ('.index', '.data-00000-of-00001'):
        open(prefix + suffix, 'w').close()
    (tmp_path / 'checkpoint').write_text('model_checkpoint_path: "a"\n')
    assert card_lib.find_for_checkpoint(str(tmp_path)) is None
    card_lib.write(prefix + '.model.json', _card())
    assert card_lib.find_for_checkpoint(str(tmp_path)) == prefix + '.model.json'
    card_lib.write(str(tmp_path / 'model.json'), _card())  # a folder's own card comes first
    assert card_lib.find_for_checkpoint(str(tmp_path)) == str(tmp_path / 'model.json')


def test_a_folder_as_the_card_is_the_card_found_in_it(tmp_path):
    """--model_card=<train dir or export folder> (score_detections, eval, detect): a train dir's
    model.json, an export's metadata.json; a folder without one names what it looked for."""
    train_dir, export_dir, empty = (tmp_path / n for n in ('train', 'export', 'empty'))
    for folder in (train_dir, export_dir, empty):
        folder.mkdir()
    card_lib.write(str(train_dir / card_lib.CARD_FILE), _card())
    card_lib.write(
        str(export_dir / card_lib.EXPORT_METADATA_FILE), _card().replace(card_id='e' * 32)
    )
    assert card_lib.load(str(train_dir)) == _card()
    assert card_lib.load(str(export_dir)).card_id == 'e' * 32
    with pytest.raises(card_lib.CardError) as info:
        card_lib.load(str(empty))
    assert str(info.value) == (
        f"{empty}: a folder without a model card (model.json, an export's metadata.json, or a "
        "checkpoint's <prefix>.model.json); pass the card file."
    )


def test_a_model_or_checkpoint_file_as_the_card(tmp_path):
    """--model_card=<an exported model> read it as JSON ("not UTF-8 text"): it says what the
    file is and what to pass; a checkpoint's file is its checkpoint's card."""
    tflite = tmp_path / 'model_int8.tflite'
    tflite.write_bytes(b'\x1c\x00\x00\x00TFL3')
    with pytest.raises(card_lib.CardError) as info:
        card_lib.load(str(tflite))
    assert str(info.value) == (
        f'{tflite}: a TFLite model, not a model card; pass the metadata.json of its export (or '
        'the export folder); detect and eval run the model itself with --exported_model.'
    )
    index = tmp_path / 'model.ckpt-5.index'
    index.write_bytes(b'')
    with pytest.raises(card_lib.CardError) as info:
        card_lib.load(str(index))
    assert str(info.value) == (
        f'{index}: a checkpoint file, not a model card, and no card is beside it '
        '(model.ckpt-5.model.json or model.json); pass the card of the model it holds.'
    )
    card_lib.write(str(tmp_path / card_lib.CARD_FILE), _card())
    assert card_lib.load(str(index)) == _card()


def test_contradicting_flag_is_an_error_naming_flag_values_and_file(tmp_path):
    path = card_lib.write(str(tmp_path / 'model.json'), _card())
    lines = []
    with pytest.raises(card_lib.CardError) as info:
        cli.resolve_card(cli.ModelFlags(depth_multiplier=1.0), str(tmp_path), log=lines.append)
    message = str(info.value)
    assert '--depth_multiplier=1.0' in message and 'which says 0.5' in message and path in message
    assert '--override_model_card' in message
    for flag in (
        cli.ModelFlags(model_name='ssd_300_vgg'),
        cli.ModelFlags(num_classes=21),
        cli.ModelFlags(anchor_sizes='mobilenet_ssd', model_name='ssd_512_vgg'),
    ):
        with pytest.raises(card_lib.CardError, match='contradicts the model card'):
            cli.resolve_card(flag, str(tmp_path), log=lines.append)
    # The card's summary counts the classes without the background: so does the message.
    with pytest.raises(card_lib.CardError) as info:
        cli.resolve_card(cli.ModelFlags(num_classes=3), str(tmp_path), log=lines.append)
    assert (
        f'--num_classes=3 contradicts the model card {path}, which says 4 (3 classes and the '
        in (str(info.value))
    )
    # A preset of another net than the card's (a typo would have been refused with the flags).
    with pytest.raises(ValueError) as info:
        cli.resolve_card(cli.ModelFlags(anchor_sizes='caffe_voc'), str(tmp_path), log=lines.append)
    assert str(info.value) == (
        '--anchor_sizes=caffe_voc is a preset of ssd_300_vgg, ssd_512_vgg, not of '
        'ssd_300_mobilenet; the ssd_300_mobilenet presets are mobilenet_ssd.'
    )
    # Flags that agree with the card are fine; so are detection settings (logged).
    card = cli.resolve_card(
        cli.ModelFlags(
            depth_multiplier=0.5,
            num_classes=4,
            anchor_sizes='mobilenet_ssd',
            nms_threshold=0.6,
            compute_dtype='bfloat16',
        ),
        str(tmp_path),
        log=lines.append,
    )
    assert card.params == _card().params and card.class_names == NAMES
    assert card.detection == card_lib.DetectionSettings(0.2, 0.6, 100, 200)
    assert card.compute_dtype == 'bfloat16'
    assert any('nms_threshold 0.45 -> 0.6' in line for line in lines)


def test_override_replaces_the_card_and_says_so(tmp_path):
    card_lib.write(str(tmp_path / 'model.json'), _card())
    lines = []
    card = cli.resolve_card(
        cli.ModelFlags(depth_multiplier=1.0, override_model_card=True),
        str(tmp_path),
        log=lines.append,
    )
    assert card.params.depth_multiplier == 1.0 and card.class_names == NAMES
    assert any('--override_model_card: depth_multiplier 0.5' in line for line in lines)


def test_every_detection_flag_replaces_the_cards_and_an_override_keeps_them(tmp_path):
    card_lib.write(str(tmp_path / 'model.json'), _card())
    flags = cli.ModelFlags(select_threshold=0.3, nms_threshold=0.5, top_k=7, keep_top_k=5)
    card = cli.resolve_card(flags, str(tmp_path), log=lambda _: None)
    assert card.detection == card_lib.DetectionSettings(0.3, 0.5, 7, 5)
    # Another net for the card's model keeps its run settings (and classes), not the defaults.
    card = cli.resolve_card(
        cli.ModelFlags(model_name='ssd_300_vgg', override_model_card=True),
        str(tmp_path),
        log=lambda _: None,
    )
    assert card.model_name == 'ssd_300_vgg' and card.class_names == NAMES
    assert card.detection == card_lib.DetectionSettings(0.2, 0.45, 100, 200)


def test_a_datasets_class_names_do_not_replace_the_cards_own(tmp_path):
    """A dataset names the classes of a card without names (`class_1`, ...) only: the card's
    own names are the model's labels (a dataset of the same count in another order is the
    class-remap's or the mismatch check's business)."""
    dataset = types.SimpleNamespace(
        class_names=('a', 'b', 'c'), num_classes=4, name='d', split_name='s', dataset_dir='x'
    )
    card_lib.write(str(tmp_path / 'model.json'), _card())
    card = cli.resolve_card(cli.ModelFlags(), str(tmp_path), dataset=dataset, log=lambda _: None)
    assert card.class_names == NAMES
    unnamed = _card(class_names=card_lib.default_class_names(4))
    card_lib.write(str(tmp_path / 'model.json'), unnamed)
    card = cli.resolve_card(cli.ModelFlags(), str(tmp_path), dataset=dataset, log=lambda _: None)
    assert card.class_names == ('a', 'b', 'c')


def test_an_overridden_anchor_preset_is_the_runs(tmp_path):
    card_lib.write(
        str(tmp_path / 'model.json'),
        card_lib.from_registry('ssd_300_vgg', 3, anchor_sizes='caffe_voc'),
    )
    flags = cli.ModelFlags(anchor_sizes='tf_port_coco', override_model_card=True)
    card = cli.resolve_card(flags, str(tmp_path), log=lambda _: None)
    assert card.anchor_size_preset == 'tf_port_coco'
    assert (
        card.params == card_lib.from_registry('ssd_300_vgg', 3, anchor_sizes='tf_port_coco').params
    )


def test_an_exports_structure_is_not_overridden(tmp_path):
    """An export is the net it was exported as: --override_model_card does not change it."""
    flags = cli.ModelFlags(depth_multiplier=1.0, override_model_card=True)
    with pytest.raises(card_lib.CardError) as info:
        cli.check_exported_structure(_card(), flags, 'e/metadata.json')
    assert str(info.value) == (
        '--depth_multiplier=1.0 contradicts the model card e/metadata.json, which says 0.5. Drop '
        '--depth_multiplier (the card describes the model), or export a checkpoint trained with '
        'it (export_ssd_network.py) to use --depth_multiplier=1.0.'
    )
    cli.check_exported_structure(_card(), cli.ModelFlags(depth_multiplier=0.5), 'e/metadata.json')


@pytest.mark.parametrize('count,override', [(2, False), (4, False), (2, True)])
def test_a_labels_file_of_another_count_than_the_cards_is_refused(tmp_path, count, override):
    """The card counts the classes, also with --override_model_card (of another flag than
    --num_classes, which would count them instead)."""
    path = card_lib.write(str(tmp_path / 'model.json'), _card())
    labels = tmp_path / 'labels.txt'
    labels.write_text(''.join(f'n{i}\n' for i in range(count)), encoding='utf-8')
    with pytest.raises(card_lib.CardError) as info:
        cli.resolve_card(
            cli.ModelFlags(labels_file=str(labels), override_model_card=override),
            str(tmp_path),
            log=print,
        )
    assert str(info.value) == (
        f'{labels} names {count} classes but the model card {path} says the model has 3; '
        'pass --labels_file with 3 names, one per line, label 1 first.'
    )


@pytest.mark.parametrize('value', [1, 0, 100_001, 2.0, True])
def test_num_classes_outside_its_range_is_refused_naming_the_flag(value):
    with pytest.raises(card_lib.CardError, match=rf'^--num_classes={value}: it must be an integer'):
        cli.check_num_classes(value)
    for good in (2, 100_000, None):
        cli.check_num_classes(good)


def test_without_a_card_the_flags_and_labels_file_make_the_model(tmp_path):
    labels = tmp_path / 'labels.txt'
    labels.write_text('\n'.join(NAMES) + '\n', encoding='utf-8')
    lines = []
    flags = cli.ModelFlags(
        model_name='ssd_300_mobilenet', depth_multiplier=0.5, labels_file=str(labels)
    )
    # A path that is no checkpoint is the error, before any model is described.
    with pytest.raises(FileNotFoundError, match='no checkpoint at'):
        cli.resolve_card(flags, str(tmp_path / 'model.ckpt'), log=lines.append)
    assert lines == []
    import tensorflow as tf

    with tf.Graph().as_default():
        tf.compat.v1.get_variable('w', [1])
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'))
    card = cli.resolve_card(flags, prefix, log=lines.append)
    # The labels file sets the class count (it used to assume 21 and stop).
    assert card == _card().replace(card_id='', detection=card_lib.DetectionSettings())
    assert 'no model card found' in lines[0]
    # With the names it runs with (it said class_1, class_2, ... while the labels file's ran).
    assert lines[0].endswith(
        f'3 classes ({", ".join(NAMES)}), input 300x300, depth multiplier 0.5, anchors mobilenet_ssd'
    )
    with pytest.raises(card_lib.CardError, match='names 3 classes but the model has 20'):
        cli.resolve_card(
            cli.ModelFlags(model_name='ssd_300_mobilenet', num_classes=21, labels_file=str(labels)),
            None,
            log=lines.append,
        )


def test_a_card_less_vgg_checkpoint_notes_the_older_ports_anchors(tmp_path):
    """The older TF port's ssd_300_vgg.ckpt has no card: it ran with the tf_port_coco sizes, the
    flags' default is caffe_voc, and nothing said that the two differ."""
    import tensorflow as tf

    with tf.Graph().as_default():
        tf.compat.v1.get_variable('w', [1])
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / 'ssd_300_vgg.ckpt'))
    note = (
        'a checkpoint of the older TF port (no card, the same variable names) ran there with the '
        'anchors of --anchor_sizes=tf_port_coco, not these caffe_voc: for one of those, evaluate '
        'both and keep the better (checkpoints/README.md)'
    )
    for flags, noted in (
        (cli.ModelFlags(num_classes=21), True),
        (cli.ModelFlags(model_name='ssd_512_vgg', num_classes=21), True),
        (cli.ModelFlags(num_classes=21, anchor_sizes='caffe_voc'), False),
        (cli.ModelFlags(num_classes=21, anchor_sizes='tf_port_coco'), False),
        (cli.ModelFlags(model_name='ssd_300_mobilenet', num_classes=21), False),
    ):
        lines = []
        cli.resolve_card(flags, prefix, log=lines.append)
        assert 'no model card found' in lines[0]
        assert (lines[1:2] == [note]) is noted, lines


def test_an_anchor_preset_travels_with_the_card(tmp_path):
    """A model trained with tf_port_coco anchors has the same anchor count as the default (8732)
    but boxes up to 13 px away at 300x300: with the card every later step builds its anchors."""
    default = card_lib.from_registry('ssd_300_vgg', 21)
    trained = card_lib.from_registry('ssd_300_vgg', 21, anchor_sizes='tf_port_coco')
    card_lib.write(str(tmp_path / 'model.json'), trained)
    card = cli.resolve_card(cli.ModelFlags(), str(tmp_path), log=lambda line: None)
    assert card.anchor_size_preset == 'tf_port_coco'
    ours, theirs = card.net().anchors(), default.net().anchors()
    assert ours.shape == theirs.shape == (8732, 4)
    assert np.abs(ours - theirs).max() * 300 > 12.9
    expected = [tuple(s) for s in ssd_params.ANCHOR_SIZE_PRESETS['ssd_300_vgg']['tf_port_coco']]
    assert [tuple(s) for s in card.params.anchor_sizes] == expected


def test_a_preset_is_its_sizes_and_its_clipping():
    """torchvision's SSD300 anchors have the tf_port_coco sizes but clamp width and height to
    the image: the card names them torchvision_coco, and the preset flag sets the clamping."""
    card = card_lib.from_registry('ssd_300_vgg', 91, anchor_sizes='torchvision_coco')
    assert card.params.anchor_clip == 'size' and card.params.anchor_int_sizes is False
    assert card.anchor_size_preset == 'torchvision_coco'
    same_sizes = card.with_params(anchor_clip=False, anchor_int_sizes=True)
    assert same_sizes.anchor_size_preset == 'tf_port_coco'
    assert same_sizes.with_params(anchor_int_sizes=False).anchor_size_preset is None
    clipped = card.with_detection(clip=True)
    assert card_lib.from_dict(clipped.to_dict()).detection.clip is True


def test_the_description_names_the_anchor_settings_a_card_edits(tmp_path):
    """An ablation's card with the preset's sizes and its own ratios was described as the
    preset, in the start line and the model card line, as if it ran the net's ratios."""
    card = card_lib.from_registry('ssd_300_mobilenet', 3, ('a', 'b'))
    assert card_lib.describe(card).endswith(', anchors mobilenet_ssd')
    ratios = ((2,),) * 6
    edited = card.with_params(anchor_ratios=ratios, anchor_offset=0.0)
    card_lib.write(str(tmp_path / 'model.json'), edited)
    read = card_lib.load(str(tmp_path / 'model.json'))  # JSON lists, not tuples
    assert card_lib.describe(read).endswith(
        ', anchors mobilenet_ssd sizes with its own ratios and offset'
    )
    vgg = card_lib.from_registry('ssd_300_vgg', 21)
    steps = vgg.with_params(anchor_sizes=((20, 40),) * 6, anchor_steps=(8,) * 6)
    assert card_lib.describe(steps).endswith(', anchors custom sizes with its own steps')


def test_class_names_mismatch_names_the_differing_labels():
    card = card_lib.from_registry('ssd_300_mobilenet', 6, ('a', 'b', 'c', 'd', 'e'))
    assert card_lib.class_names_mismatch(card, ('a', 'b', 'c', 'd', 'e')) is None
    assert card_lib.class_names_mismatch(card, card_lib.default_class_names(6)) is None
    assert card_lib.class_names_mismatch(card, ('a', 'b')) is None  # a count error elsewhere
    unnamed = card_lib.from_registry('ssd_300_mobilenet', 6)
    assert card_lib.class_names_mismatch(unnamed, ('e', 'd', 'c', 'b', 'a')) is None
    assert card_lib.class_names_mismatch(card, ('b', 'a', 'c', 'd', 'e')) == (
        "name their classes differently (the same classes in another order): label 1 is 'a' in "
        "the model, 'b' in the data; label 2 is 'b' in the model, 'a' in the data"
    )
    assert card_lib.class_names_mismatch(card, ('v', 'w', 'x', 'y', 'e')) == (
        "name their classes differently (other names): label 1 is 'a' in the model, 'v' in the "
        "data; label 2 is 'b' in the model, 'w' in the data; label 3 is 'c' in the model, 'x' in "
        "the data (and 1 more)"
    )


def test_run_settings_replacing_the_card_are_logged_as_given_or_default(tmp_path):
    card_lib.write(str(tmp_path / 'model.json'), _card().replace(compute_dtype='bfloat16'))
    threshold = _card().detection.select_threshold
    for given, suffix in ((frozenset(), " (this script's default)"), ({'select_threshold'}, '')):
        lines = []
        card = cli.resolve_card(
            cli.ModelFlags(select_threshold=0.5, given=frozenset(given)),
            str(tmp_path),
            log=lines.append,
        )
        assert card.detection.select_threshold == 0.5 and card.compute_dtype == 'float32'
        assert (
            f"detection settings of this run replace the card's: select_threshold "
            f'{threshold} -> 0.5{suffix}'
        ) in lines
        assert 'the net runs in float32 (--compute_dtype); the card says bfloat16' in lines


def test_an_unknown_model_name_is_said_to_be_unknown_even_with_a_card(tmp_path):
    card_lib.write(str(tmp_path / 'model.json'), _card())
    with pytest.raises(ValueError, match="unknown model_name 'ssd_300_mobilnet'; known: "):
        cli.resolve_card(cli.ModelFlags(model_name='ssd_300_mobilnet'), str(tmp_path))
