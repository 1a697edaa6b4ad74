"""Shared by the PyTorch tests and `scripts/pytorch_crosscheck.py` (which runs in an environment
with torch): the seeded state_dicts of the source networks, a `.pth` writer, the photos, and the
fixture files. Pure numpy: importing this needs neither torch nor TensorFlow.

The state_dicts are regenerated here, bit for bit, from a seed and the tensor names (numpy's
PCG64 stream); the cross-check script ran the PyTorch networks on exactly these values and
stored their outputs (and the per-tensor checksums, which the tests compare first, so that a
change of numpy's stream would fail loudly instead of comparing different nets).

"Realistic magnitude": He-normal backbone convolutions (activations keep their scale through the
ReLUs, as a trained VGG's do), small biases, the conv4_3 L2-norm scale around 20, box-code heads
giving codes of about unit size, and class heads with a background bias so that most anchors
are background and a few dozen per image pass the 0.01 score threshold (measured and stated in
the fixture metadata).
"""

import collections
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'pytorch')
PHOTO_DIR = os.path.join(FIXTURE_DIR, 'photos')
META_PATH = os.path.join(FIXTURE_DIR, 'meta.json')
READER_DIR = os.path.join(FIXTURE_DIR, 'reader')

# scikit-image's bundled photographs (skimage.data), resized to 300x300 by the cross-check.
PHOTOS = ('astronaut', 'coffee', 'chelsea')

# The VGG16 SSD300 convolutions shared by both sources: (our name, out, in, kernel).
VGG_CONVS = (
    ('conv1_1', 64, 3, 3),
    ('conv1_2', 64, 64, 3),
    ('conv2_1', 128, 64, 3),
    ('conv2_2', 128, 128, 3),
    ('conv3_1', 256, 128, 3),
    ('conv3_2', 256, 256, 3),
    ('conv3_3', 256, 256, 3),
    ('conv4_1', 512, 256, 3),
    ('conv4_2', 512, 512, 3),
    ('conv4_3', 512, 512, 3),
    ('conv5_1', 512, 512, 3),
    ('conv5_2', 512, 512, 3),
    ('conv5_3', 512, 512, 3),
    ('fc6', 1024, 512, 3),
    ('fc7', 1024, 1024, 1),
)
EXTRA_CONVS = (
    ('conv8_1', 256, 1024, 1),
    ('conv8_2', 512, 256, 3),
    ('conv9_1', 128, 512, 1),
    ('conv9_2', 256, 128, 3),
    ('conv10_1', 128, 256, 1),
    ('conv10_2', 256, 128, 3),
    ('conv11_1', 128, 256, 1),
    ('conv11_2', 256, 128, 3),
)
SOURCE_CHANNELS = (512, 1024, 512, 256, 256, 256)
ANCHORS_PER_LOCATION = (4, 6, 6, 6, 4, 4)

# ssd.pytorch: index of each VGG conv in its `vgg` ModuleList (and in vgg16_reducedfc.pth).
SSD_PYTORCH_VGG_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33)
# torchvision: where each VGG conv lives in SSDFeatureExtractorVGG.
TORCHVISION_VGG_KEYS = tuple(
    'backbone.features.%d' % i for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)
) + (
    'backbone.extra.0.1',
    'backbone.extra.0.3',
    'backbone.extra.0.5',
    'backbone.extra.0.7.1',
    'backbone.extra.0.7.3',
)
TORCHVISION_EXTRA_KEYS = tuple(
    'backbone.extra.%d.%d' % (b, i) for b in (1, 2, 3, 4) for i in (0, 2)
)

# Feature RMS at each head's input under these weights (measured by the cross-check on the
# photos), so that the heads give outputs of the intended size.
HEAD_INPUT_RMS = {
    'ssd_pytorch': (0.88, 74.0, 70.0, 63.0, 68.0, 66.0),
    'torchvision': (0.89, 84.0, 78.0, 89.0, 94.0, 93.0),
}
LOC_STD = 1.0  # box codes of about this size
CONF_STD = 2.0  # class logits spread
BACKGROUND_BIAS = 13.0  # background logit bias: most anchors are background


def _rng(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode('utf-8'))])


def _conv(sd, seed, key, out, cin, k, std=None, bias_std=0.02):
    fan_in = cin * k * k
    std = np.sqrt(2.0 / fan_in) if std is None else std
    sd[key + '.weight'] = _rng(seed, key + '.weight').standard_normal(
        (out, cin, k, k), dtype=np.float32
    ) * np.float32(std)
    sd[key + '.bias'] = _rng(seed, key + '.bias').standard_normal(
        out, dtype=np.float32
    ) * np.float32(bias_std)


def _heads(sd, seed, loc_keys, conf_keys, num_classes, rms):
    for i, (loc_key, conf_key) in enumerate(zip(loc_keys, conf_keys)):
        cin, anchors = SOURCE_CHANNELS[i], ANCHORS_PER_LOCATION[i]
        scale = 1.0 / (np.sqrt(cin * 9) * rms[i])
        _conv(sd, seed, loc_key, anchors * 4, cin, 3, std=LOC_STD * scale, bias_std=0.1)
        _conv(sd, seed, conf_key, anchors * num_classes, cin, 3, std=CONF_STD * scale, bias_std=0.5)
        bias = sd[conf_key + '.bias'].reshape(anchors, num_classes)
        bias[:, 0] += np.float32(BACKGROUND_BIAS)


def _l2_scale(seed, key):
    return (20.0 + 2.0 * _rng(seed, key).standard_normal(512, dtype=np.float32)).astype(np.float32)


def ssd_pytorch_vgg(seed):
    """ssd.pytorch's `vgg16_reducedfc.pth` layout: keys '<index>.weight' / '<index>.bias'."""
    sd = collections.OrderedDict()
    for index, (_, out, cin, k) in zip(SSD_PYTORCH_VGG_INDEX, VGG_CONVS):
        _conv(sd, seed, 'vgg.%d' % index, out, cin, k)
    return collections.OrderedDict((k[len('vgg.') :], v) for k, v in sd.items())


def ssd_pytorch_ssd300(seed, num_classes=21):
    """ssd.pytorch's `build_ssd('test', 300, num_classes)` state_dict (e.g. ssd300_mAP_77.43_v2)."""
    sd = collections.OrderedDict()
    for index, (_, out, cin, k) in zip(SSD_PYTORCH_VGG_INDEX, VGG_CONVS):
        _conv(sd, seed, 'vgg.%d' % index, out, cin, k)
    sd['L2Norm.weight'] = _l2_scale(seed, 'L2Norm.weight')
    for i, (_, out, cin, k) in enumerate(EXTRA_CONVS):
        _conv(sd, seed, 'extras.%d' % i, out, cin, k)
    _heads(
        sd,
        seed,
        ['loc.%d' % i for i in range(6)],
        ['conf.%d' % i for i in range(6)],
        num_classes,
        HEAD_INPUT_RMS['ssd_pytorch'],
    )
    return sd


def torchvision_vgg_features(seed):
    """torchvision's `vgg16_features-amdegroot-*.pth` layout, without the (NaN) classifier."""
    sd = collections.OrderedDict()
    for i, (_, out, cin, k) in zip(
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), VGG_CONVS[:13]
    ):
        _conv(sd, seed, 'features.%d' % i, out, cin, k)
    return sd


def torchvision_ssd300(seed, num_classes=91):
    """torchvision's `ssd300_vgg16(num_classes=91)` state_dict, in its own key order."""
    sd = collections.OrderedDict()
    sd['backbone.scale_weight'] = _l2_scale(seed, 'backbone.scale_weight')
    for key, (_, out, cin, k) in zip(TORCHVISION_VGG_KEYS, VGG_CONVS):
        _conv(sd, seed, key, out, cin, k)
    for key, (_, out, cin, k) in zip(TORCHVISION_EXTRA_KEYS, EXTRA_CONVS):
        _conv(sd, seed, key, out, cin, k)
    heads = collections.OrderedDict()
    _heads(
        heads,
        seed,
        ['head.regression_head.module_list.%d' % i for i in range(6)],
        ['head.classification_head.module_list.%d' % i for i in range(6)],
        num_classes,
        HEAD_INPUT_RMS['torchvision'],
    )
    for prefix in ('head.classification_head', 'head.regression_head'):
        for key, value in heads.items():
            if key.startswith(prefix):
                sd[key] = value
    return sd


SOURCES = {
    'ssd_pytorch_ssd300': ssd_pytorch_ssd300,
    'torchvision_ssd300': torchvision_ssd300,
    'ssd_pytorch_vgg': ssd_pytorch_vgg,
    'torchvision_vgg_features': torchvision_vgg_features,
}
SEED = 2024


def checksums(state_dict):
    """{key: [sum, sum of squares]} in float64: what the cross-check ran on, to compare."""
    return {
        k: [float(np.sum(v, dtype=np.float64)), float(np.sum(np.square(v, dtype=np.float64)))]
        for k, v in state_dict.items()
    }


def load_meta():
    with open(META_PATH, encoding='utf-8') as f:
        return json.load(f)


def load_photos():
    """[(name, uint8 [300, 300, 3] RGB)] of the committed photo fixtures."""
    from PIL import Image  # matplotlib's dependency; only the tests read PNGs.

    return [
        (name, np.asarray(Image.open(os.path.join(PHOTO_DIR, name + '.png')).convert('RGB')))
        for name in PHOTOS
    ]


def load_outputs(source):
    """The PyTorch outputs the cross-check stored for `source` (an npz, as a dict)."""
    with np.load(os.path.join(FIXTURE_DIR, source + '_outputs.npz')) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------------------
# A `.pth` writer (zip or legacy format), so that the tests can hand the converter files of the
# full-size layouts without committing them. Checked against torch.load by the cross-check.

_STORAGE_NAMES = {
    np.dtype('float32'): 'FloatStorage',
    np.dtype('float16'): 'HalfStorage',
    np.dtype('float64'): 'DoubleStorage',
    np.dtype('int64'): 'LongStorage',
}


class _Pickle:
    """Emits the protocol-2 opcodes of torch.save's state_dict pickle."""

    def __init__(self):
        self.out = io.BytesIO()
        self.out.write(b'\x80\x02')

    def op(self, data):
        self.out.write(data)

    def glob(self, module, name):
        self.op(b'c' + module.encode() + b'\n' + name.encode() + b'\n')

    def string(self, text):
        data = text.encode('utf-8')
        self.op(b'X' + struct.pack('<I', len(data)) + data)

    def integer(self, value):
        if -(1 << 31) <= value < 1 << 31:
            self.op(b'J' + struct.pack('<i', value))
        else:  # LONG1, as pickle writes larger ints
            data = value.to_bytes(value.bit_length() // 8 + 1, 'little', signed=True)
            self.op(b'\x8a' + bytes([len(data)]) + data)

    def ints(self, values):
        self.op(b'(')
        for v in values:
            self.integer(v)
        self.op(b't')


def write_pth(state_dict, path, legacy=False, location='cpu'):
    """Writes {name: array} as torch.save(state_dict) would (one storage per tensor).

    legacy: the pre-1.6 format (torch.save(..., _use_new_zipfile_serialization=False)), with
      `location` as the storages' device tag (ssd.pytorch's files say 'cuda:0').
    """
    p = _Pickle()
    p.glob('collections', 'OrderedDict')
    p.op(b')R(')
    arrays = []
    for index, (name, value) in enumerate(state_dict.items()):
        value = np.array(value, order='C', copy=True)  # ascontiguousarray would make 0-d 1-d
        key = str(index)
        arrays.append((key, value))
        p.string(name)
        p.glob('torch._utils', '_rebuild_tensor_v2')
        p.op(b'((')
        p.string('storage')
        p.glob('torch', _STORAGE_NAMES[value.dtype])
        p.string(key)
        p.string(location)
        p.integer(value.size)
        if legacy:
            p.op(b'N')  # view_metadata
        p.op(b'tQ')
        p.integer(0)
        p.ints(value.shape)
        p.ints([int(np.prod(value.shape[i + 1 :])) for i in range(value.ndim)])
        p.op(b'\x89')  # requires_grad False
        p.glob('collections', 'OrderedDict')
        p.op(b')Rt')
        p.op(b'R')
    p.op(b'u.')
    data_pkl = p.out.getvalue()
    if not legacy:
        archive = os.path.splitext(os.path.basename(path))[0] or 'archive'
        with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
            zf.writestr(archive + '/data.pkl', data_pkl)
            zf.writestr(archive + '/byteorder', 'little')
            for key, value in arrays:
                zf.writestr(
                    archive + '/data/' + key, value.astype(value.dtype.newbyteorder('<')).tobytes()
                )
            zf.writestr(archive + '/version', '3\n')
        return
    import pickle

    with open(path, 'wb') as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(
            pickle.dumps(
                {
                    'protocol_version': 1001,
                    'little_endian': True,
                    'type_sizes': {'short': 2, 'int': 4, 'long': 4},
                },
                protocol=2,
            )
        )
        f.write(data_pkl)
        f.write(pickle.dumps([key for key, _ in arrays], protocol=2))
        for _, value in arrays:
            f.write(struct.pack('<q', value.size))
            f.write(value.astype(value.dtype.newbyteorder('<')).tobytes())
