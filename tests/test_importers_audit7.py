"""Weight importers as a demanding user meets them (an audit's findings): the Caffe converter's
--caffe_mean_bgr / --caffe_scale checked as the prototxt's transform_param is, a deploy prototxt
without PriorBox layers, truncated downloads (.caffemodel, zip and legacy .pth) named as such,
and a folder passed as --pth_path."""

import json
import re

import numpy as np
import pytest

from converters import caffe_convert
from converters import caffe_pb
from converters import caffe_ssd
from converters import pth_reader
from tests import caffe_fixtures
from tests import pytorch_fixtures
from tests.conftest import run_script

# weiliu89's COCO SSD300 deploy (models/VGGNet/coco/SSD_300x300): min_size / max_size per layer.
COCO_SSD300_PRIOR_SIZES = [[21, 45], [45, 99], [99, 153], [153, 207], [207, 261], [261, 315]]
# The fixture deploy's DetectionOutput, unlike the published one: the card must take the deploy's.
DEPLOY_DETECTION = {
    'nms_threshold': 0.5,
    'top_k': 300,
    'keep_top_k': 150,
    'confidence_threshold': 0.02,
}


@pytest.fixture(scope='module')
def coco_vgg300(tmp_path_factory):
    """An 81-class (COCO) VGG SSD300 caffemodel and its deploy prototxt."""
    directory = tmp_path_factory.mktemp('coco_vgg300')
    net = caffe_fixtures.vgg_ssd(300, num_classes=81, seed=7, detection=DEPLOY_DETECTION)
    proto, model = caffe_fixtures.write_net(net, str(directory), 'coco300')
    return directory, proto, model, net


@pytest.fixture(scope='module')
def mobilenet(tmp_path_factory):
    directory = tmp_path_factory.mktemp('mobilenet')
    net = caffe_fixtures.mobilenet_ssd('merged', seed=3)
    return caffe_fixtures.write_net(net, str(directory), 'mobilenet')


def _card(result):
    with open(result.config_path) as f:
        return json.load(f)


def test_one_mean_value_is_every_channels_and_a_zero_scale_is_refused(mobilenet, tmp_path):
    """--caffe_mean_bgr=127.5 (Caffe's mean_value: one value for all channels) wrote a card
    whose mean had one value; --caffe_scale=0 wrote a model whose every input was 0."""
    proto, model = mobilenet
    # The flags win over the deploy's transform_param.
    with open(proto) as f:
        text = f.read()
    transformed = tmp_path / 'transformed.prototxt'
    transformed.write_text(
        'layer { name: "data" type: "Input" transform_param { mean_value: 1 mean_value: 2 '
        'mean_value: 3 scale: 0.25 } }\n' + text
    )
    result = caffe_convert.convert(
        model,
        str(tmp_path / 'm.ckpt'),
        'ssd_300_mobilenet',
        prototxt_path=str(transformed),
        caffe_mean_bgr=['127.5'],
        caffe_scale=0.5,
        log=lambda line: None,
    )
    assert _card(result)['normalisation']['mean_rgb'] == [127.5, 127.5, 127.5]
    assert _card(result)['normalisation']['scale'] == 0.5
    for mean, scale, message in [
        (None, 0.0, '--caffe_scale=0.0: expected a number > 0'),
        (None, -0.007843, '--caffe_scale=-0.007843: expected a number > 0'),
        (None, float('nan'), '--caffe_scale=nan: expected a number > 0'),
        (['104', '117'], None, '--caffe_mean_bgr=104,117: expected 1 or 3 finite numbers'),
        (['104', 'nan', '123'], None, '--caffe_mean_bgr=104,nan,123: expected 1 or 3'),
    ]:
        with pytest.raises(caffe_ssd.ConversionError, match=re.escape(message)):
            caffe_convert.convert(
                model,
                str(tmp_path / 'bad.ckpt'),
                'ssd_300_mobilenet',
                caffe_mean_bgr=mean,
                caffe_scale=scale,
                log=lambda line: None,
            )
    assert not list(tmp_path.glob('bad.ckpt*'))
    # A deploy for another input size is refused (the net's anchors are for its own).
    assert text.count('dim: 300') == 2
    other_size = tmp_path / 'other_size.prototxt'
    other_size.write_text(text.replace('dim: 300', 'dim: 512'))
    with pytest.raises(
        caffe_ssd.ConversionError,
        match=re.escape(f'{other_size}: input [512, 512], but ssd_300_mobilenet is built for '),
    ):
        caffe_convert.convert(
            model,
            str(tmp_path / 'bad.ckpt'),
            'ssd_300_mobilenet',
            prototxt_path=str(other_size),
            log=lambda line: None,
        )
    assert not list(tmp_path.glob('bad.ckpt*'))


def test_script_says_a_mean_that_is_no_number_in_one_line(tmp_path):
    """--caffe_mean_bgr=104,117,abc was a ValueError traceback."""
    proc = run_script(
        'caffe_to_tensorflow.py',
        '--caffemodel_path=%s' % (tmp_path / 'absent.caffemodel'),
        '--model_name=ssd_300_vgg',
        '--caffe_mean_bgr=104,117,abc',
        '--output_path=%s' % (tmp_path / 'x.ckpt'),
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'caffe_to_tensorflow: error: --caffe_mean_bgr=104,117,abc: expected 1 or 3 finite '
        'numbers (B,G,R, e.g. 104,117,123)'
    )


def test_a_prototxt_without_prior_boxes_gives_the_published_anchors(coco_vgg300, tmp_path):
    """A deploy cut down to the convolutions (as converted for other runtimes) gave a COCO
    model the net's default VOC anchors, logged as 'from the prototxt PriorBox layers'; without
    any prototxt the same model got the COCO sizes."""
    directory, proto, model, net = coco_vgg300
    blocks = re.split(r'(?m)^(?=layer \{)', net.prototxt)
    kept = [b for b in blocks if 'type: "PriorBox"' not in b and 'DetectionOutput' not in b]
    assert len(kept) == len(blocks) - 7  # 6 PriorBox layers and the DetectionOutput
    cut = tmp_path / 'convs_only.prototxt'
    cut.write_text(''.join(kept))
    lines = []
    result = caffe_convert.convert(
        model, str(tmp_path / 'c.ckpt'), 'ssd_300_vgg', prototxt_path=str(cut), log=lines.append
    )
    card = _card(result)
    assert card['num_classes'] == 81
    assert card['ssd_params']['anchor_sizes'] == COCO_SSD300_PRIOR_SIZES
    # weiliu89's VGG SSD (ssd_pascal.py): mean_value 104, 117, 123 (B, G, R) and no scale;
    # DetectionOutput nms_threshold 0.45, top_k 400, keep_top_k 200, confidence_threshold 0.01.
    assert card['normalisation']['mean_rgb'] == [123.0, 117.0, 104.0]
    assert card['normalisation']['scale'] == 1.0
    assert card['detection'] == {
        'select_threshold': 0.01,
        'nms_threshold': 0.45,
        'top_k': 400,
        'keep_top_k': 200,
        'clip': False,
    }
    assert any(
        'anchors from the published COCO preset (%s has no PriorBox layers)' % cut in line
        for line in lines
    )
    # Its detection settings too are the published ones, said so (they read as the prototxt's).
    assert any(
        line.endswith(
            f'(from the published defaults: {cut} has no DetectionOutput layer (is it the deploy '
            'file?))'
        )
        for line in lines
    ), lines
    # With the full deploy the sizes are the prototxt's own (the VOC ones of the fixture).
    full_lines = []
    full = caffe_convert.convert(
        model, str(tmp_path / 'f.ckpt'), 'ssd_300_vgg', prototxt_path=proto, log=full_lines.append
    )
    assert any(line.endswith(f'(from {proto})') for line in full_lines), full_lines
    assert _card(full)['ssd_params']['anchor_sizes'] == [
        [p[0], p[1]] for p in caffe_fixtures.VGG300_VOC_PRIORS
    ]
    assert _card(full)['detection'] == {
        'select_threshold': 0.02,
        'nms_threshold': 0.5,
        'top_k': 300,
        'keep_top_k': 150,
        'clip': False,
    }


def test_class_count_conflict_does_not_suggest_the_flag_already_given(coco_vgg300, tmp_path):
    directory, _, model, _ = coco_vgg300
    voc = tmp_path / 'voc.prototxt'
    voc.write_text(caffe_fixtures.vgg_ssd(300, num_classes=21).prototxt)
    with pytest.raises(caffe_ssd.ConversionError) as err:
        caffe_convert.convert(
            model,
            str(tmp_path / 'x.ckpt'),
            'ssd_300_vgg',
            prototxt_path=str(voc),
            num_classes=81,
            log=lambda line: None,
        )
    assert str(err.value) == (
        '%s says num_classes 21 (DetectionOutput) but --num_classes is 81; pass the deploy '
        'prototxt of this model' % voc
    )


@pytest.mark.parametrize('legacy_v1', [False, True])
def test_a_truncated_caffemodel_is_called_truncated(legacy_v1, tmp_path):
    """A download cut short was 'not a binary Caffe model ... a deploy.prototxt goes to
    --prototxt_path'."""
    layers = caffe_fixtures.mobilenet_ssd('merged', seed=1).layers
    layers = [layer for layer in layers if layer.type in caffe_pb.V1_LAYER_TYPES.values()]
    data = caffe_pb.serialize_caffemodel(layers, legacy_v1=legacy_v1)
    # Independently: the bytes of the first k layers (the net's name field comes first).
    k = 9
    start = len(caffe_pb.serialize_caffemodel(layers[:k], legacy_v1=legacy_v1))
    end = len(caffe_pb.serialize_caffemodel(layers[: k + 1], legacy_v1=legacy_v1))
    cut = start + (end - start) // 2
    path = tmp_path / 'cut.caffemodel'
    path.write_bytes(data[:cut])
    with pytest.raises(caffe_pb.CaffeModelError) as err:
        caffe_pb.read_caffemodel(str(path))
    message = str(err.value)
    assert message.startswith(
        "%s ends inside its layer %d (counted from 1, after %r; "
        % (path, k + 1, layers[k - 1].name)
    )
    assert 'the file is truncated' in message and '--prototxt_path' not in message
    # Cut right after the layer's tag (field 2: 1 byte; field 100: 2): no length to quote.
    path.write_bytes(data[: start + (1 if legacy_v1 else 2)])
    with pytest.raises(caffe_pb.CaffeModelError) as err:
        caffe_pb.read_caffemodel(str(path))
    assert str(err.value).startswith(
        '%s ends inside its layer %d (counted from 1, after %r; within its length): the file is '
        'truncated' % (path, k + 1, layers[k - 1].name)
    )
    # Cut inside the first layer: none before it to name.
    path.write_bytes(
        data[: len(caffe_pb.serialize_caffemodel(layers[:0], legacy_v1=legacy_v1)) + 5]
    )
    with pytest.raises(caffe_pb.CaffeModelError) as err:
        caffe_pb.read_caffemodel(str(path))
    assert str(err.value).startswith('%s ends inside its layer 1 (counted from 1; ' % path)
    # Still: a text prototxt passed as the weights says so.
    text = tmp_path / 'deploy.prototxt'
    text.write_text(caffe_fixtures.mobilenet_ssd().prototxt)
    with pytest.raises(caffe_pb.CaffeModelError, match='a deploy.prototxt goes to'):
        caffe_pb.read_caffemodel(str(text))


def _small_state_dict():
    return pytorch_fixtures.ssd_pytorch_vgg(0)


def test_a_truncated_zip_pth_is_called_truncated(tmp_path):
    """torchvision's zip-format file cut short was 'not a PyTorch .pth file (reading the magic
    number: UnpicklingError ...)'."""
    whole = tmp_path / 'whole.pth'
    sd = dict(list(_small_state_dict().items())[:4])
    pytorch_fixtures.write_pth(sd, str(whole))
    data = whole.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        path = tmp_path / 'cut.pth'
        path.write_bytes(data[:cut])
        with pytest.raises(pth_reader.PthError) as err:
            pth_reader.load_state_dict(str(path))
        assert str(err.value) == (
            '%s: a zip archive without its end (the central directory): the file is truncated '
            'or damaged (%d bytes; an interrupted download or copy?): download or copy it '
            'again' % (path, cut)
        )
    state = pth_reader.load_state_dict(str(whole))
    assert all(np.array_equal(state[k], v) for k, v in sd.items())


def test_a_truncated_legacy_pth_is_called_truncated(tmp_path):
    """ssd.pytorch's legacy-format file cut inside its pickle, within a global's name, was
    'refusing to load the global tor.: a .pth file is a pickle ...' (as if booby-trapped)."""
    whole = tmp_path / 'whole.pth'
    pytorch_fixtures.write_pth(dict(list(_small_state_dict().items())[:4]), str(whole), True)
    data = whole.read_bytes()
    path = tmp_path / 'cut.pth'
    for cut, part in [
        (data.index(b'ctorch\n') + len(b'ctor'), 'object pickle'),
        (data.index(b'collections') + 4, 'object pickle'),
        (40, 'sys_info'),
    ]:
        path.write_bytes(data[:cut])
        with pytest.raises(pth_reader.PthError) as err:
            pth_reader.load_state_dict(str(path))
        assert str(err.value) == (
            '%s: the file ends inside its %s (%d bytes): it is truncated (an interrupted '
            'download or copy?): download or copy it again' % (path, part, cut)
        )


def test_a_folder_as_pth_path_is_called_a_folder(tmp_path):
    """It was 'No such .pth file: <folder>'."""
    with pytest.raises(OSError) as err:
        pth_reader.load_state_dict(str(tmp_path))
    assert str(err.value) == (
        '%s: the .pth file is a directory, not a regular file; refusing to read it.' % tmp_path
    )
    with pytest.raises(FileNotFoundError, match='no such .pth file'):
        pth_reader.load_state_dict(str(tmp_path / 'absent.pth'))


def test_weights_that_overflow_are_refused_before_anything_is_written(tmp_path):
    """A diverged training's weights (finite, huge) ended in a RuntimeError traceback after the
    checkpoint, its card and the folder's state file were written."""
    from converters import checkpoint_io
    from converters import pytorch_convert

    state = {
        k: (v * np.float32(1e12) if k.endswith('weight') else v)
        for k, v in pytorch_fixtures.ssd_pytorch_ssd300(0).items()
    }
    largest = max(float(np.max(np.abs(v))) for v in state.values())
    pth = tmp_path / 'diverged.pth'
    pytorch_fixtures.write_pth(state, str(pth))
    out = tmp_path / 'out'
    with pytest.raises(checkpoint_io.CheckpointMismatchError) as err:
        pytorch_convert.convert(str(pth), str(out / 'm.ckpt'), log=lambda line: None)
    assert str(err.value).startswith(
        '%s (ssd_pytorch_ssd300) gives non-finite localisations and logits on the check input' % pth
    )
    assert 'its weights overflow float32 (the largest, %g, is in ' % largest in str(err.value)
    assert not out.exists() or not list(out.iterdir())
