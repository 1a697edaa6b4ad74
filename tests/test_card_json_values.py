"""JSON values of a card's file that Python's json reads but the code did not expect (audit):
integers beyond float64 (parsed exactly), NaN / Infinity, lists where objects belong, lists nested
near the parser's limit. Each is a CardError naming the file, not a traceback, and not a value
that fails only after an evaluation has published its results."""

import json
import math
import re

import pytest

from evaluation import outputs as eval_outputs
from model import card as card_lib
from nets import ssd_params

MODEL = 'ssd_300_vgg'


def _card():
    return card_lib.from_registry(MODEL, num_classes=3)


def _with_nested(content, depth):
    """The JSON text of `content` with its string 'NESTED' replaced by 1 in `depth` lists
    (written as text: json.dumps would itself recurse)."""
    return json.dumps(content).replace('"NESTED"', '[' * depth + '1' + ']' * depth)


def _export(tmp_path, export):
    """A frozen-graph export folder whose metadata.json has `export` (absent: None)."""
    meta = _card().to_dict()
    if export is not None:
        meta['export'] = export
    (tmp_path / 'metadata.json').write_text(json.dumps(meta))  # NaN / Infinity as Python writes
    model = tmp_path / 'frozen_graph.pb'
    model.write_bytes(b'')
    return str(model), str(tmp_path / 'metadata.json')


@pytest.mark.parametrize(
    'export,why',
    [
        # An AttributeError traceback before (eval --exported_model and detect).
        ([1], r'export is \[1\], expected a JSON object'),
        ({'checkpoint': 'x'}, r"export.checkpoint is 'x', expected a JSON object"),
        # OverflowError / TypeError / 'Value out of range' (unnamed) at TensorBoard's int(step),
        # after the results were published; 2.5 was silently truncated to 2.
        ({'checkpoint': {'step': math.inf}}, r'export.checkpoint.step is inf, expected'),
        ({'checkpoint': {'step': math.nan}}, r'export.checkpoint.step is nan, expected'),
        ({'checkpoint': {'step': [1]}}, r'export.checkpoint.step is \[1\], expected'),
        ({'checkpoint': {'step': 10**400}}, r'export.checkpoint.step is 1000000'),
        ({'checkpoint': {'step': 2**63}}, r'export.checkpoint.step is 9223372036854775808,'),
        ({'checkpoint': {'step': 2.5}}, r'export.checkpoint.step is 2.5, expected'),
        ({'checkpoint': {'step': -1}}, r'export.checkpoint.step is -1, expected'),
        ({'checkpoint': {'step': True}}, r'export.checkpoint.step is True, expected'),
    ],
)
def test_an_exports_step_that_is_not_an_int64_step_is_refused_naming_the_file(
    tmp_path, export, why
):
    model, meta_path = _export(tmp_path, export)
    # Refused where the metadata is read: before an evaluation or a detection runs.
    with pytest.raises(
        card_lib.CardError, match=f'^{re.escape(meta_path)}: its {why}.*export_ssd_network.py'
    ):
        card_lib.read_export_metadata(model)
    with open(meta_path, encoding='utf-8') as f:
        meta = json.load(f)
    with pytest.raises(card_lib.CardError, match=f'^{re.escape(meta_path)}: its {why}'):
        card_lib.export_step(meta, meta_path)


@pytest.mark.parametrize(
    'export,step',
    [
        (None, None),
        ({}, None),
        ({'checkpoint': None}, None),
        ({'checkpoint': {'path': '/x/model.ckpt-5'}}, None),
        ({'checkpoint': {'step': 0}}, 0),
        ({'checkpoint': {'step': 2**63 - 1}}, 2**63 - 1),
    ],
)
def test_an_exports_step_is_returned_or_none_where_absent(tmp_path, export, step):
    model, _ = _export(tmp_path, export)
    meta, _ = card_lib.read_export_metadata(model)
    assert card_lib.export_step(meta) == step


def test_tensorboard_refuses_a_step_int_would_truncate(tmp_path):
    for step in (2.5, True, 10**400, '7'):
        with pytest.raises(ValueError, match='TensorBoard step .* is not an int64 integer'):
            eval_outputs.write_tensorboard(str(tmp_path), step, {'voc07': 0.5}, {})


def test_tensorboard_takes_every_int64_step(tmp_path):
    import tensorflow as tf

    for step in (-(2**63), 2**63 - 1):
        eval_outputs.write_tensorboard(str(tmp_path / str(step)), step, {'voc07': 0.5}, {})
        [path] = (tmp_path / str(step)).iterdir()
        read = [
            (e.step, v.tag)
            for e in tf.compat.v1.train.summary_iterator(str(path))
            for v in e.summary.value
        ]
        assert read == [(step, 'eval/voc07_mAP')]


@pytest.mark.parametrize('depth', [4, 600])
def test_ssd_params_nested_too_deeply_are_refused_naming_the_file(tmp_path, depth):
    """500-980 levels pass the JSON parser (fewer under pytest's deeper stack); converting them
    to tuples was a RecursionError traceback (model.json, metadata.json, a converter's
    <prefix>.json)."""
    meta = _card().to_dict()
    meta['ssd_params']['anchor_offset'] = 'NESTED'
    path = tmp_path / 'model.json'
    path.write_text(_with_nested(meta, depth))
    with pytest.raises(
        card_lib.CardError,
        match=f'^{re.escape(str(path))}: not a valid model card: SSD parameter anchor_offset '
        f'nests lists more than {ssd_params.MAX_PARAM_NESTING} levels deep',
    ):
        card_lib.load(str(path))
    legacy = tmp_path / 'model.ckpt.json'
    legacy.write_text(
        _with_nested({'model_name': MODEL, 'ssd_params': {'feat_shapes': 'NESTED'}}, depth)
    )
    with pytest.raises(
        card_lib.CardError, match=f'^{re.escape(str(legacy))}: .*feat_shapes nests lists more'
    ):
        card_lib.load(str(legacy))


def test_the_nets_own_parameters_are_within_the_nesting_bound():
    for name in ('ssd_300_vgg', 'ssd_512_vgg', 'ssd_300_mobilenet'):
        card = card_lib.from_registry(name)
        meta = card.to_dict()
        assert card_lib.from_dict(meta, 'x.json') == card


@pytest.mark.parametrize(
    'error', [RecursionError, OverflowError, AttributeError, TypeError, ValueError]
)
def test_reading_a_card_turns_python_errors_into_card_errors_naming_the_file(error):
    with pytest.raises(card_lib.CardError, match=r'^x/model.json: not a valid model card'):
        with card_lib._reading('x/model.json'):
            raise error('the content')


def _caffe_sidecar(tmp_path, **fields):
    config = {'model_name': MODEL, 'backbone_only': False, 'ssd_params': {'num_classes': 21}}
    config.update(fields)
    path = tmp_path / 'model.ckpt.json'
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize(
    'fields,why',
    [
        # OverflowError tracebacks at float() before.
        ({'preprocessing': {'scale': 10**400}}, r'preprocessing.scale is 1000000.*, expected a'),
        (
            {'preprocessing': {'mean_rgb': [10**400, 1, 2]}},
            r'preprocessing.mean_rgb is \[1000000.*, expected 3 numbers',
        ),
        ({'preprocessing': {'scale': math.nan}}, r'preprocessing.scale is nan, expected a num'),
        ({'preprocessing': {'mean_rgb': 'abc'}}, r"preprocessing.mean_rgb is 'abc', expected 3"),
        # AttributeError tracebacks before.
        ({'preprocessing': [1]}, r'preprocessing is \[1\], expected a JSON object'),
        ({'detection': [1]}, r'detection is \[1\], expected a JSON object'),
        ({'ssd_params': [1]}, r'ssd_params is \[1\], expected a JSON object'),
    ],
)
def test_a_caffe_converters_card_with_wrong_values_is_refused_naming_the_file(
    tmp_path, fields, why
):
    path = _caffe_sidecar(tmp_path, **fields)
    with pytest.raises(
        card_lib.CardError, match=f'^{re.escape(path)}: not a valid model card: {why}'
    ):
        card_lib.load(path)


def test_a_caffe_converters_card_with_good_values_is_read(tmp_path):
    path = _caffe_sidecar(
        tmp_path, preprocessing={'mean_rgb': [1, 2, 3], 'scale': 0.5}, detection=None
    )
    card = card_lib.load(path)
    assert card.mean_rgb == (1.0, 2.0, 3.0) and card.scale == 0.5


def test_a_caffe_converters_card_reads_its_detection_and_defaults_to_the_nets_input(tmp_path):
    """Caffe's DetectionOutput names (confidence_threshold, ...) become the card's; without a
    preprocessing entry the input is MobileNet-SSD's published (RGB - 127.5) * 0.007843."""
    detection = {'confidence_threshold': 0.25, 'nms_threshold': 0.5, 'top_k': 77, 'keep_top_k': 33}
    path = _caffe_sidecar(tmp_path, model_name='ssd_300_mobilenet', detection=detection)
    card = card_lib.load(path)
    assert card.detection == card_lib.DetectionSettings(0.25, 0.5, 77, 33)
    assert card.mean_rgb == (127.5, 127.5, 127.5) and card.scale == 0.007843
