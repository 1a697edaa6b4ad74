"""The model card: the one description of a trained model, from training to every later step.

A card holds everything needed to rebuild the net and read its outputs: the net (`model_name`,
every `SSDParams` field: feature layers and shapes, anchors, prior scaling, depth multiplier,
number of classes), the class names and, where the classes have them, their external category
ids (COCO's), the input (size, normalisation `(RGB - mean_rgb) * scale`, the evaluation resize),
the detection settings (Caffe DetectionOutput: `select_threshold`, `nms_threshold`, `top_k`,
`keep_top_k`) and where the model came from (`provenance`: training flags and dataset, or the
converted files; the project's git commit).

Files (JSON, `format_version` FORMAT_VERSION, written atomically):
  <train_dir>/model.json        written by train_ssd_network.py before the first checkpoint;
  <prefix>.model.json           beside a converted checkpoint (caffe_to_tensorflow.py);
  <export_dir>/metadata.json    every export: the card plus the export's details;
  <eval_dir>/best/model.json    the eval watcher's best checkpoint.
`find_for_checkpoint` looks for them in that order of specificity; it also reads the files
earlier versions wrote (`<prefix>.json` of the Caffe converter, an export's `metadata.json`).
"""

import collections
import contextlib
import dataclasses
import datetime
import hashlib
import math
import os
import posixpath
import re
import subprocess
import uuid
from typing import Optional, Tuple

from datasets import labels as labels_lib
from model import checkpoints
from nets import nets_factory
from nets import ssd_common
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory
from preprocessing.ssd_preprocessing import SSDPreprocessing
from tf_extended import atomic_io
from tf_extended import safe_io
from tf_extended import texts

FORMAT_VERSION = 1
CARD_FILE = 'model.json'
CHECKPOINT_CARD_SUFFIX = '.model.json'
# Earlier files: the Caffe converter's `<prefix>.json` and an export's metadata.json.
LEGACY_CHECKPOINT_SUFFIX = '.json'
EXPORT_METADATA_FILE = 'metadata.json'
# In an export folder while export_ssd_network.py writes it (inference/export.py PENDING_FILE),
# left there by an export that was interrupted: the folder's files may then be of two exports.
EXPORT_PENDING_FILE = '.export_pending.json'
MAX_CARD_BYTES = safe_io.MAX_CARD_BYTES
# In an export's metadata.json: {file name: {'size': bytes, 'sha256': hex digest}} of each model
# file the export wrote beside it; in a SavedModel's assets.extra/metadata.json: of the
# SavedModel's own files (names relative to its folder). A model loaded with a metadata.json is
# checked against it (`check_model_files`): another export's metadata.json copied beside a model
# gave its detections that model's class names. The check reads the whole model once per load
# (sha256 of 100 MB: 0.08 s measured from the page cache on a 2-core EPYC, up to about 0.3 s
# from a cold disk), accepted for a load that otherwise takes seconds.
# Metadata written before the record: `check_model_outputs`, the IR's own card, `unchecked_note`.
FILE_DIGESTS = 'file_digests'
# An export writes a handful of files (a SavedModel: 5 or 6); a record of more is not one.
MAX_RECORDED_FILES = 1000
# A SavedModel's graph file: what its loader reads first, recorded in its own metadata.
SAVED_MODEL_GRAPH = 'saved_model.pb'
# The Caffe converter's DetectionOutput names -> ours.
CAFFE_DETECTION_NAMES = {
    'confidence_threshold': 'select_threshold',
    'nms_threshold': 'nms_threshold',
    'top_k': 'top_k',
    'keep_top_k': 'keep_top_k',
}
EVAL_RESIZE = 'WARP_RESIZE'
# Bound of top_k / keep_top_k (Caffe's are 400 / 200; the outputs are padded to keep_top_k).
MAX_DETECTIONS = 100_000
# Bound of a checkpoint's global step read from a file (TF's global_step and event steps: int64).
MAX_STEP = 2**63 - 1
# A card id as `new_card_id` makes it; '' is a card without one (cards of a registry's net, and
# those read without the field). The watcher names folders after it, so a card read from a file
# holds no other id (a card_id '/../../.' took the watcher's results out of its --eval_dir).
CARD_ID = re.compile(r'([0-9a-f]{32})?')


class CardError(ValueError):
    """A card that cannot be read, or flags that contradict it."""


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """Caffe DetectionOutput: per class, scores > select_threshold, the top_k best, greedy NMS
    at nms_threshold; then keep_top_k per image across classes. clip: decoded boxes clipped to
    the image before NMS (torchvision's SSD does; Caffe's does not)."""

    select_threshold: float = 0.01
    nms_threshold: float = 0.45
    top_k: int = 400
    keep_top_k: int = 200
    clip: bool = False

    def __post_init__(self):
        is_number, is_int = ssd_params_lib.is_number, ssd_params_lib.is_int
        checks = {
            'select_threshold': (is_number(self.select_threshold, 0, 1), 'a number in [0, 1]'),
            'nms_threshold': (is_number(self.nms_threshold, 0, 1), 'a number in [0, 1]'),
            'top_k': (
                is_int(self.top_k, -MAX_DETECTIONS, MAX_DETECTIONS),
                f'an integer up to {MAX_DETECTIONS} (<= 0: every candidate)',
            ),
            'keep_top_k': (
                is_int(self.keep_top_k, -MAX_DETECTIONS, MAX_DETECTIONS),
                f'an integer up to {MAX_DETECTIONS} (<= 0: every detection)',
            ),
            'clip': (isinstance(self.clip, bool), 'true or false'),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise CardError(
                    f'detection setting {name} (--{name}) is {texts.shown(getattr(self, name))}, '
                    f'expected {expected}.'
                )

    @classmethod
    def from_dict(cls, values, source):
        if not isinstance(values, dict):
            raise CardError(f'{source}: its detection settings are not a JSON object.')
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CardError(
                f'{source}: unknown detection setting(s) {unknown}; known: '
                f'{[f.name for f in dataclasses.fields(cls)]}.'
            )
        try:
            return cls(**values)
        except CardError as err:
            raise CardError(f'{source}: {err}') from None


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A trained model's description (see the module docstring).

    params: the net's `SSDParams` (num_classes included); mean_rgb / scale: the input
    normalisation `(RGB - mean_rgb) * scale`; class_names: names of labels 1..C-1;
    category_ids: None, or a tuple of C-1 distinct ints >= 0, the external category id of labels
    1..C-1 (COCO's: 1..90 with gaps for contiguous labels; a label map's item ids; detect writes
    them as `category_id`);
    compute_dtype: the net's arithmetic for inference, one of `ssd_common.COMPUTE_DTYPES`
    (weights stay float32; softmax, decoding and NMS always run in float32); card_id: a unique
    id given when the model's card is first written (kept by exports and the watcher's best/);
    provenance: free-form JSON of where the model came from.
    """

    model_name: str
    params: ssd_params_lib.SSDParams
    mean_rgb: Tuple[float, float, float]
    scale: float
    class_names: Tuple[str, ...]
    detection: DetectionSettings = DetectionSettings()
    compute_dtype: str = 'float32'
    card_id: str = ''
    category_ids: Optional[Tuple[int, ...]] = None
    provenance: dict = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.compute_dtype not in ssd_common.COMPUTE_DTYPES:
            raise CardError(
                f'compute_dtype {self.compute_dtype!r} is not one of {ssd_common.COMPUTE_DTYPES}.'
            )
        if len(self.class_names) != self.params.num_classes - 1:
            raise CardError(
                f'{len(self.class_names)} class names for a model with '
                f'{self.params.num_classes - 1} classes besides the background.'
            )
        # The checks of a card read from a file, where it is made (flags, a dataset's names): a
        # card this project writes is one every later step reads.
        _check_params(self.model_name, self.params)
        for name in self.class_names:
            problem = labels_lib.class_name_problem(name) if isinstance(name, str) else 'no text'
            if problem:
                raise CardError(
                    f'class name {texts.shown(name)} {problem}; the model card refuses it.'
                )
        if isinstance(self.category_ids, list):  # as JSON and Python callers give them
            object.__setattr__(self, 'category_ids', tuple(self.category_ids))
        problem = _category_ids_problem(self.category_ids, len(self.class_names))
        if problem:
            raise CardError(f'category_ids {problem}; the model card refuses them.')
        is_number = ssd_params_lib.is_number
        if not (len(self.mean_rgb) == 3 and all(map(is_number, self.mean_rgb))):
            raise CardError(f'mean_rgb {texts.shown(self.mean_rgb)} is not 3 numbers (R, G, B).')
        if not is_number(self.scale, above=0):
            raise CardError(f'scale {texts.shown(self.scale)} is not a number > 0.')

    @property
    def num_classes(self):
        """Classes including the background."""
        return self.params.num_classes

    @property
    def input_shape(self):
        """(height, width) of the net's input."""
        return tuple(int(s) for s in self.params.img_shape)

    @property
    def anchor_size_preset(self):
        """The name of the anchor preset these anchors are (sizes, clipping, int rule), or None."""
        base = nets_factory.get_network(self.model_name).default_params

        def anchors(p):
            return (
                tuple(tuple(s) for s in p.anchor_sizes),
                p.anchor_clip,
                p.anchor_int_sizes,
            )

        presets = ssd_params_lib.ANCHOR_SIZE_PRESETS.get(self.model_name, {})
        return next(
            (
                name
                for name in sorted(presets)
                if anchors(
                    base._replace(**ssd_params_lib.anchor_preset_params(self.model_name, name))
                )
                == anchors(self.params)
            ),
            None,
        )

    def net(self):
        """A new SSD net instance of this card."""
        return nets_factory.get_network(self.model_name)(self.params)

    def preprocessing(self):
        return SSDPreprocessing(self.model_name, self.mean_rgb, self.scale)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def with_params(self, **changes):
        return self.replace(params=self.params._replace(**changes))

    def with_detection(self, **changes):
        """The card with the given detection settings; None values keep the card's."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return self.replace(detection=dataclasses.replace(self.detection, **changes))

    def to_dict(self):
        """The card's JSON content (`from_dict` reads it back)."""
        return {
            'format_version': FORMAT_VERSION,
            'card_id': self.card_id,
            'model_name': self.model_name,
            'num_classes': self.num_classes,
            'class_names': list(self.class_names),
            'category_ids': None if self.category_ids is None else list(self.category_ids),
            'input': {
                'height': self.input_shape[0],
                'width': self.input_shape[1],
                'channel_order': 'RGB',
                'dtype': 'uint8',
                'resize': EVAL_RESIZE,
                'resize_method': 'bilinear',
            },
            'normalisation': {
                'mean_rgb': list(self.mean_rgb),
                'scale': self.scale,
                'formula': '(RGB - mean_rgb) * scale',
            },
            'anchor_size_preset': self.anchor_size_preset,
            'ssd_params': ssd_params_lib.params_to_dict(self.params),
            'detection': dataclasses.asdict(self.detection),
            'compute_dtype': self.compute_dtype,
            'provenance': self.provenance,
        }


def _check_params(model_name, params):
    """Raises CardError unless `params` are valid SSD parameters of the net `model_name`."""
    try:
        ssd_params_lib.check_params(params, nets_factory.get_network(model_name).default_params)
    except ValueError as err:
        raise CardError(str(err)) from None


def from_dict(meta, source='<card>'):
    """The `ModelCard` of a card's JSON content (also an export metadata.json of version 0)."""
    if not isinstance(meta, dict):
        raise CardError(f'{source}: the model card is {texts.shown(meta)}, not a JSON object.')
    version = meta.get('format_version', 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CardError(
            f'{source}: model card format_version {version!r}; this version of the '
            f'project reads up to {FORMAT_VERSION}: update the project.'
        )
    with _reading(source):
        cls = nets_factory.get_network(meta['model_name'])
        params = ssd_params_lib.params_from_dict(cls.default_params, meta['ssd_params'])
        normalisation = meta['normalisation']
        _check_card_fields(meta, normalisation)
        return ModelCard(
            meta['model_name'],
            params,
            tuple(float(m) for m in normalisation['mean_rgb']),
            float(normalisation['scale']),
            tuple(meta['class_names']),
            DetectionSettings.from_dict(meta.get('detection', {}), source),
            compute_dtype=meta.get('compute_dtype', 'float32'),
            card_id=meta.get('card_id', ''),
            category_ids=meta.get('category_ids'),  # None in cards written before the field
            provenance=meta.get('provenance') or {},
        )


def _category_ids_problem(ids, count):
    """Why `ids` is not None or a tuple of `count` distinct ints >= 0 (text to follow
    'category_ids'), or None."""
    if ids is None:
        return None
    if not isinstance(ids, tuple):
        return f'is {texts.shown(ids)}, expected a list of integers'
    bad = [i for i in ids if not ssd_params_lib.is_int(i, 0, math.inf)]
    if bad:
        return f'holds {texts.shown(bad[0])}, expected integers >= 0'
    if len(ids) != count:
        return f'has {len(ids)} ids for {count} classes (one per class, label 1 first)'
    repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if repeated:
        return f'repeat {texts.listed(repeated, 5)}, expected one id per class'
    return None


@contextlib.contextmanager
def _reading(source):
    """Turns the errors of reading a card's content into one CardError naming `source`.

    The content is JSON from a file: besides the checks' errors, a value of another type than
    the code expects (TypeError / AttributeError), an integer beyond float64's range
    (OverflowError) or lists nested near the parser's limit (RecursionError) is the file's
    fault, not a bug to show as a traceback."""
    try:
        yield
    except CardError as err:
        if str(err).startswith(f'{source}:'):
            raise
        raise CardError(f'{source}: not a valid model card: {str(err).rstrip(".")}.') from None
    except KeyError as err:
        raise CardError(f'{source}: not a valid model card (no field {err}).') from None
    except RecursionError:
        raise CardError(
            f'{source}: not a valid model card: it nests its JSON too deeply to read (a card '
            f'nests lists a few levels at most); write it again with the project.'
        ) from None
    except (TypeError, ValueError, OverflowError, AttributeError) as err:
        raise CardError(f'{source}: not a valid model card: {str(err).rstrip(".")}.') from None


def _check_card_fields(meta, normalisation):
    """Raises ValueError naming the first of a card's fields besides the net's parameters and
    detection settings that is not a valid value."""
    is_number = ssd_params_lib.is_number
    if not isinstance(normalisation, dict):
        raise ValueError(f'normalisation is {texts.shown(normalisation)}, expected a JSON object')
    names, mean, scale = meta['class_names'], normalisation['mean_rgb'], normalisation['scale']
    checks = {
        'class_names': (
            names,
            isinstance(names, list) and all(isinstance(n, str) for n in names),
            'a list of class names (strings)',
        ),
        'normalisation.mean_rgb': (
            mean,
            isinstance(mean, list) and len(mean) == 3 and all(is_number(m) for m in mean),
            '3 numbers (R, G, B)',
        ),
        'normalisation.scale': (scale, is_number(scale, above=0), 'a number > 0'),
    }
    compute_dtype, card_id = meta.get('compute_dtype', ''), meta.get('card_id', '')
    checks['compute_dtype'] = (compute_dtype, isinstance(compute_dtype, str), 'a string')
    checks['card_id'] = (
        card_id,
        isinstance(card_id, str) and CARD_ID.fullmatch(card_id) is not None,
        "32 lowercase hex digits as the project writes them, or '' (no id)",
    )
    provenance = meta.get('provenance')
    checks['provenance'] = (provenance, isinstance(provenance or {}, dict), 'a JSON object')
    for name, (value, ok, expected) in checks.items():
        if not ok:
            raise ValueError(f'{name} is {texts.shown(value)}, expected {expected}')


def _from_caffe_config(config, source):
    """A card from the JSON caffe_to_tensorflow.py wrote before cards existed (`<prefix>.json`)."""
    model_name = config.get('model_name')
    if config.get('backbone_only') or 'ssd_params' not in config:
        raise CardError(f'{source}: a converted backbone, not a detection model; it has no card.')
    with _reading(source):
        return _card_of_caffe_config(config, model_name, source)


def _card_of_caffe_config(config, model_name, source):
    cls = nets_factory.get_network(model_name)
    params = ssd_params_lib.params_from_dict(cls.default_params, config['ssd_params'])
    for name in ('detection', 'preprocessing'):
        if not isinstance(config.get(name) or {}, dict):
            raise ValueError(f'{name} is {texts.shown(config[name])}, expected a JSON object')
    detection = {
        CAFFE_DETECTION_NAMES[k]: v
        for k, v in (config.get('detection') or {}).items()
        if k in CAFFE_DETECTION_NAMES
    }
    pre = config.get('preprocessing') or {}
    default = preprocessing_factory.get_preprocessing(model_name)
    mean, scale = pre.get('mean_rgb', default.mean_rgb), pre.get('scale', default.scale)
    is_number = ssd_params_lib.is_number
    if not (isinstance(mean, (list, tuple)) and len(mean) == 3 and all(is_number(m) for m in mean)):
        raise ValueError(
            f'preprocessing.mean_rgb is {texts.shown(mean)}, expected 3 numbers (R, G, B)'
        )
    if not is_number(scale, above=0):
        raise ValueError(f'preprocessing.scale is {texts.shown(scale)}, expected a number > 0')
    return ModelCard(
        model_name,
        params,
        tuple(float(m) for m in mean),
        float(scale),
        default_class_names(params.num_classes),
        DetectionSettings.from_dict(detection, source),
        provenance={'converted_from': config.get('source')},
    )


# What a file of these suffixes is, where a card was expected (`load`).
_EXPORTED_MODEL_SUFFIXES = {
    '.pb': 'a frozen graph',
    '.tflite': 'a TFLite model',
    '.xml': 'an OpenVINO IR',
    '.bin': "an OpenVINO IR's weights",
}


def load(path):
    """Reads a card (`model.json`, an export's metadata.json, or an old `<prefix>.json`; a
    folder: the card `find_for_checkpoint` finds there, or its metadata.json; a checkpoint's
    file: its card). An exported model file is refused saying what to pass instead (it read as
    text that is not UTF-8)."""
    kind = _EXPORTED_MODEL_SUFFIXES.get(os.path.splitext(path)[1].lower())
    if kind and not os.path.isdir(path):
        raise CardError(
            f'{path}: {kind}, not a model card; pass the {EXPORT_METADATA_FILE} of its export '
            f'(or the export folder); detect and eval run the model itself with '
            f'--exported_model.'
        )
    if re.search(r'\.(index|meta|data-\d{5}-of-\d{5})$', path) and os.path.isfile(path):
        found = find_for_checkpoint(path)
        if found is None:
            raise CardError(
                f'{path}: a checkpoint file, not a model card, and no card is beside it '
                f'({os.path.basename(_checkpoint_prefix(path))}{CHECKPOINT_CARD_SUFFIX} or '
                f'{CARD_FILE}); pass the card of the model it holds.'
            )
        path = found
    if os.path.isdir(path):
        found = find_for_checkpoint(path)
        if found is None and os.path.isfile(os.path.join(path, EXPORT_METADATA_FILE)):
            found = os.path.join(path, EXPORT_METADATA_FILE)
        if found is None:
            raise CardError(
                f'{path}: a folder without a model card ({CARD_FILE}, an export\'s '
                f'{EXPORT_METADATA_FILE}, or a checkpoint\'s <prefix>{CHECKPOINT_CARD_SUFFIX}); '
                'pass the card file.'
            )
        path = found
    meta = read_json_object(path, 'model card')
    if 'normalisation' in meta:
        return from_dict(meta, path)
    if 'ssd_params' in meta or 'backbone_only' in meta:
        return _from_caffe_config(meta, path)
    raise CardError(f'{path}: not a model card (no model_name/ssd_params/normalisation).')


def read_json_object(path, what):
    """A card's (or an export metadata's) JSON object, read as an untrusted file
    (`safe_io.read_json`: regular files only, at most MAX_CARD_BYTES). Raises CardError naming
    the file."""
    try:
        meta = safe_io.read_json(path, what, MAX_CARD_BYTES)
    except (OSError, ValueError) as err:
        raise CardError(f'cannot read the {what}: {err}') from None
    if not isinstance(meta, dict):
        raise CardError(f'{path}: the {what} is not a JSON object.')
    return meta


class ExportUnfinishedError(CardError):
    """An export folder with the EXPORT_PENDING_FILE of an export that has not finished."""


def check_export_finished(path):
    """Refuses the model file or SavedModel folder `path` of an export whose folder holds the
    EXPORT_PENDING_FILE: an export into it is running or was interrupted, so its files and
    metadata may be of different exports (a new frozen graph beside the earlier metadata.json).
    The folder is the one holding `path` (for a SavedModel, the export folder holding it),
    symlinks resolved: a link to an export's saved_model/ is read through, so its folder is
    checked. Raises ExportUnfinishedError."""
    folder = os.path.dirname(os.path.realpath(path))
    if os.path.lexists(os.path.join(folder, EXPORT_PENDING_FILE)):
        raise ExportUnfinishedError(
            f'{path}: the export into {folder} has not finished (its {EXPORT_PENDING_FILE} is '
            f'there: interrupted or still running), so its files may be of different exports; '
            f'run export_ssd_network.py --overwrite into {folder} again to finish it.'
        )


class ModelMismatchError(CardError):
    """An export's metadata that does not describe the model loaded with it."""


def export_metadata_path(path):
    """Where the metadata.json of the exported model `path` is: beside a model file, or in a
    SavedModel folder's `assets.extra/` (not read: see `read_export_metadata`)."""
    if os.path.isdir(path):
        return os.path.join(path, 'assets.extra', EXPORT_METADATA_FILE)
    return os.path.join(os.path.dirname(os.path.abspath(path)), EXPORT_METADATA_FILE)


def read_export_metadata(path, files=None, contents=None):
    """(metadata dict, its path) of an export: `metadata.json` beside a model file, or in a
    SavedModel folder's `assets.extra/`. Raises FileNotFoundError (none there) or CardError
    (ExportUnfinishedError: `check_export_finished`; a metadata.json whose export step is not
    one, `export_step`; ModelMismatchError: `check_model_files` of `files` (and `contents`),
    default the model file `path` (an OpenVINO IR: its .xml and .bin): refused here, before a
    caller evaluates or detects with the model)."""
    check_export_finished(path)
    meta_path = export_metadata_path(path)
    if not os.path.lexists(meta_path):
        raise FileNotFoundError(
            f'{path}: no {EXPORT_METADATA_FILE} beside it; copy the one export_ssd_network.py '
            f'wrote with the model next to it.'
        )
    meta = read_json_object(meta_path, 'export metadata')
    export_step(meta, meta_path)
    check_model_files(meta, meta_path, path, files, contents)
    return meta, meta_path


def _described(meta):
    """' (ssd_300_mobilenet, input 300x300, 20 classes)' of export metadata, what of it is
    readable ('' for none), for the refusals below."""
    parts = []
    if isinstance(meta.get('model_name'), str):
        parts.append(f'{meta["model_name"]:.60}')
    size = meta.get('input')
    size = [size.get(k) for k in ('height', 'width')] if isinstance(size, dict) else []
    if size and all(ssd_params_lib.is_int(v, 1, 1 << 20) for v in size):
        parts.append(f'input {size[0]}x{size[1]}')
    if ssd_params_lib.is_int(meta.get('num_classes'), 2, 1 << 31):
        parts.append(f'{meta["num_classes"] - 1} classes')
    return f' ({", ".join(parts)})' if parts else ''


def _use_the_right_metadata(path):
    return (
        f'use the {EXPORT_METADATA_FILE} {os.path.basename(os.path.normpath(path))} was exported '
        'with, or export the model again with export_ssd_network.py.'
    )


def recorded_digests(meta, meta_path):
    """The FILE_DIGESTS of export metadata (dict), or None where it has none (written before
    they were recorded). Raises CardError for a value of another shape."""
    digests = meta.get(FILE_DIGESTS)
    if digests is None:
        return None
    if not (
        isinstance(digests, dict)
        and len(digests) <= MAX_RECORDED_FILES
        and all(
            isinstance(name, str)
            and name
            # One spelling per file: 'variables/x', './variables/x' and 'variables//x' would
            # have each file hashed once per alias (a 16 MiB record: 10^5 reads of the model).
            and posixpath.normpath(name) == name
            and safe_io.check_inside(name) is None
            and isinstance(entry, dict)
            and ssd_params_lib.is_int(entry.get('size'), 0, MAX_STEP)
            and isinstance(entry.get('sha256'), str)
            for name, entry in digests.items()
        )
    ):
        raise CardError(
            f'{meta_path}: its {FILE_DIGESTS} is {texts.shown(digests)}, expected {{file name: '
            f'{{"size": bytes, "sha256": hex digest}}}} of the model files its export wrote (at '
            f'most {MAX_RECORDED_FILES}, each name once, as a relative path inside the folder); '
            f'export the model again with export_ssd_network.py.'
        )
    return digests


def _same(digest, entry):
    return digest['size'] == entry['size'] and digest['sha256'] == entry['sha256'].lower()


def matches_record(path, entry, what='model file'):
    """Whether the file at `path` has the size and sha256 that `entry` ({'size', 'sha256'}, a
    FILE_DIGESTS value) records; a file of another size is not read."""
    return os.path.getsize(path) == entry['size'] and _same(safe_io.file_digest(path, what), entry)


def check_model_files(meta, meta_path, path, files=None, contents=None):
    """Refuses export metadata (`meta` read from `meta_path`) that does not record the model it
    is loaded with: `path`, a model file beside it, or a SavedModel folder holding it.

    A file (`files`, default [`path`]) must have the size and sha256 of one of the files the
    metadata's FILE_DIGESTS records (by content: a renamed copy still is that model); a
    SavedModel's recorded files (its saved_model.pb among them) must be there with theirs.
    Metadata written before the record is not checked here (`unchecked_note`). `contents`:
    {file: bytes} of files the caller has read already (checked as read, not read again).

    Raises ModelMismatchError naming both, CardError for a malformed record."""
    digests = recorded_digests(meta, meta_path)
    if digests is None:
        return
    described = _described(meta)
    if os.path.isdir(path):
        for name in sorted(set(digests) | {SAVED_MODEL_GRAPH}):
            file = os.path.join(path, name)
            if not os.path.lexists(file):
                problem = 'is missing'
            elif name in digests and matches_record(file, digests[name], 'SavedModel file'):
                continue
            else:
                problem = 'is not the file its export wrote'
            raise ModelMismatchError(
                f'{meta_path}{described} does not describe the SavedModel {path}: its {name} '
                f'{problem} (that metadata.json records the size and sha256 of each file of its '
                f'SavedModel); export the model again with export_ssd_network.py.'
            )
        return
    recorded = (
        f'{", ".join(sorted(digests))}, whose sizes and sha256 it records'
        if digests
        else 'it records none: that export wrote no model file beside it'
    )
    for file in files or [path]:
        data = (contents or {}).get(file)
        size = os.stat(file).st_size if data is None else len(data)
        if any(entry['size'] == size for entry in digests.values()):
            digest = (
                safe_io.file_digest(file, 'model file')
                if data is None
                else {'size': size, 'sha256': hashlib.sha256(data).hexdigest()}
            )
            if any(_same(digest, entry) for entry in digests.values()):
                continue
        raise ModelMismatchError(
            f'{meta_path}{described} does not describe {file}: that file is none of the model '
            f'files its export wrote ({recorded}); {_use_the_right_metadata(path)}'
        )


def check_model_outputs(meta, meta_path, path, raw_scores_shape, card):
    """Refuses export metadata (an export's: it has `anchors.count`; `meta` read from
    `meta_path`) whose anchors and classes are not those the model's `raw_scores` give
    (`raw_scores_shape`: `[B, anchors, classes]`, None or -1 where not static). The classes are
    those of `card`, the ModelCard of `meta` (`from_dict`) that the model runs with: its
    `num_classes` field may say otherwise than the `ssd_params` the card is read from. Catches
    another model's metadata also where the metadata records no FILE_DIGESTS. Raises
    ModelMismatchError naming both files (`meta_path` is `path` for the card inside the
    model)."""
    anchors = meta.get('anchors')
    count = anchors.get('count') if isinstance(anchors, dict) else None
    classes = card.num_classes
    shape = [None if d is None or d < 0 else int(d) for d in raw_scores_shape]
    if not (ssd_params_lib.is_int(count, 1, MAX_STEP) and len(shape) == 3):
        return
    got = shape[1:]
    if all(g is None or g == want for g, want in zip(got, (count, classes))):
        return
    anchors, scores = ('?' if g is None else g for g in got)
    scored = f'{anchors} anchors in {scores} classes (the background included)'
    if meta_path == path:  # the model's own card (`resolve_export_metadata`)
        raise ModelMismatchError(
            f'{path}: the model card inside it{_described(meta)} has {count} anchors and '
            f'{classes} classes, where the model scores {scored}: the file was edited or '
            f'damaged; export the model again with export_ssd_network.py.'
        )
    raise ModelMismatchError(
        f'{meta_path}{_described(meta)} does not describe {path}: the model scores {scored}, '
        f'where that metadata.json has {count} anchors and {classes} classes; '
        f'{_use_the_right_metadata(path)}'
    )


def _export_identity(meta):
    """What tells the metadata of two exports apart ({what: value}): the card's id and net, the
    input size and normalisation, the export's time and checkpoint (not the class names or
    detection settings, which a user may edit in a metadata.json)."""

    def field(value, *keys):
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return {
        'card_id': meta.get('card_id'),
        'model_name': meta.get('model_name'),
        'num_classes': meta.get('num_classes'),
        'ssd_params': meta.get('ssd_params'),
        'input size': [field(meta, 'input', k) for k in ('height', 'width')],
        'normalisation': meta.get('normalisation'),
        'export time': field(meta, 'export', 'time'),
        'exported checkpoint': field(meta, 'export', 'checkpoint', 'path'),
    }


def check_same_export(meta, meta_path, embedded, path):
    """Refuses export metadata (`meta` from `meta_path`) of another export than the card
    `embedded` in the model `path` (`inference.embedded_card`, an OpenVINO IR's runtime info):
    they are written from one dict by one export. A card without an export time (a frozen
    graph's or TFLite model's: `embedded_card.embeddable`) is compared without it. Raises
    ModelMismatchError naming both and what differs."""
    ours, theirs = _export_identity(meta), _export_identity(embedded)
    if theirs['export time'] is None:
        del ours['export time'], theirs['export time']
    differ = [key for key in ours if ours[key] != theirs[key]]
    if differ:
        raise ModelMismatchError(
            f'{meta_path}{_described(meta)} does not describe {path}: the model card in that '
            f'model{_described(embedded)} is of another export (they differ in '
            f'{", ".join(differ)}); {_use_the_right_metadata(path)}'
        )


def resolve_export_metadata(path, embedded, what, files=None, contents=None):
    """(metadata dict, where it was read, note or None) of the exported model file `path` (`what`
    it is in messages: 'frozen graph', 'IR', ...): where is its metadata.json, or `path` itself
    for the model's own card (the file messages about the card name: `check_model_outputs`).

    Its metadata.json (`read_export_metadata` of `files` and `contents`), checked against the
    card in the model where it has one (`check_same_export`); the note (`unchecked_note`) where
    neither digests nor a card could be compared. Without a metadata.json, the model's card.

    embedded: a callable giving the metadata dict inside the model, None where it has none;
      ValueError saying what it is instead (`safe_io.parse_card_json`).
    Raises FileNotFoundError (neither), CardError (an unreadable card and no metadata.json) and
    `read_export_metadata`'s errors."""
    try:
        meta, meta_path = read_export_metadata(path, files, contents)
    except FileNotFoundError:
        meta = meta_path = None
    try:
        card = embedded()
    except ValueError as err:
        if meta is not None:  # the metadata.json is read: checked by its digests, if any
            return meta, meta_path, unchecked_note(meta, meta_path, path)
        raise CardError(f'{path}: the model card in the {what} is {err}.') from None
    if meta is not None:
        if card is None:
            return meta, meta_path, unchecked_note(meta, meta_path, path)
        check_same_export(meta, meta_path, card, path)
        return meta, meta_path, None
    if card is None:
        raise FileNotFoundError(
            f'{path}: no {EXPORT_METADATA_FILE} beside it and no model card in the {what} (an '
            f'export older than the cards inside models); copy the {EXPORT_METADATA_FILE} '
            f'export_ssd_network.py wrote with it next to it, or export the model again.'
        )
    return card, path, None


def unchecked_note(meta, meta_path, path):
    """One line for a model loaded with metadata that records no FILE_DIGESTS (an export
    written before they were), saying what could not be checked; None where it records them."""
    if FILE_DIGESTS in meta:
        return None
    anchors = meta.get('anchors')
    compared = isinstance(anchors, dict) and 'count' in anchors
    return (
        f'note: {meta_path} records no sizes and sha256 digests of its model files (an export '
        f'written before they were recorded), so it is not checked that it describes {path}'
        + (' beyond its number of anchors and classes' if compared else '')
        + '; export the model again to have it checked.'
    )


def export_step(meta, source='the export metadata'):
    """The global step of the checkpoint an export was made from (its metadata dict
    `export.checkpoint.step`, an int in [0, MAX_STEP]), or None where the metadata has none.

    Raises CardError naming `source` (the metadata file) for a value of another kind: `export`
    or `export.checkpoint` not a JSON object, a step not such an integer (a float, NaN or
    Infinity, beyond int64, a list): the evaluation's results and TensorBoard events, and
    detect's report, record the step as an integer."""
    export = meta.get('export')
    checkpoint = None
    if export is not None:
        if not isinstance(export, dict):
            raise CardError(
                f'{source}: its export is {texts.shown(export)}, expected a JSON object (the '
                f'export\'s details); export the model again with export_ssd_network.py.'
            )
        checkpoint = export.get('checkpoint')
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, dict):
        raise CardError(
            f'{source}: its export.checkpoint is {texts.shown(checkpoint)}, expected a JSON object '
            f'(the exported checkpoint\'s path and step); export the model again with '
            f'export_ssd_network.py.'
        )
    step = checkpoint.get('step')
    if step is not None and not ssd_params_lib.is_int(step, 0, MAX_STEP):
        raise CardError(
            f'{source}: its export.checkpoint.step is {texts.shown(step)}, expected the exported '
            f'checkpoint\'s global step (an integer in [0, 2**63-1]); export the model again '
            f'with export_ssd_network.py, or correct the step in the file.'
        )
    return step


def write(path, card):
    """Writes `card` as JSON to `path` atomically; returns the path."""
    atomic_io.write_json_atomic(path, card.to_dict())
    return path


def _checkpoint_prefix(path):
    for suffix in ('.index', '.meta'):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    if '.data-' in os.path.basename(path):
        return path[: path.rindex('.data-')]
    return path


def find_for_checkpoint(checkpoint_path):
    """The card describing a checkpoint (prefix, one of its files, or a directory), or None.

    Looks at `<prefix>.model.json`, then `model.json` in its folder, then the files earlier
    versions wrote (`<prefix>.json`, `metadata.json`). A directory: its `model.json`, else the
    card of its latest checkpoint (a converter's output folder).
    """
    if not checkpoint_path:
        return None
    if os.path.isdir(checkpoint_path):
        card = os.path.join(checkpoint_path, CARD_FILE)
        if os.path.isfile(card):
            return card
        # A converter's folder: no model.json, its state file names the checkpoint, and the
        # checkpoint's own card is beside it.
        latest = checkpoints.latest_in_directory(checkpoint_path)
        return None if latest is None else find_for_checkpoint(latest)
    else:
        prefix = _checkpoint_prefix(checkpoint_path)
        folder = os.path.dirname(os.path.abspath(prefix))
        candidates = [
            prefix + CHECKPOINT_CARD_SUFFIX,
            os.path.join(folder, CARD_FILE),
            prefix + LEGACY_CHECKPOINT_SUFFIX,
            os.path.join(folder, EXPORT_METADATA_FILE),
        ]
    return next((c for c in candidates if os.path.isfile(c)), None)


def default_class_names(num_classes):
    return tuple(f'class_{i}' for i in range(1, num_classes))


def class_indices(card, names):
    """The model's label of each of `names` (a dataset's labels 1..), background first:
    `[0, i_1, ..., i_K]`, when every one of `names` is one of the model's classes under another
    label or the model has more (the same classes in another order, or a subset): its class heads
    can then be restored by name. None when they are the model's labels as they are, when a
    name is not the model's, or where either side's classes are unnamed (`class_1`, ...)."""
    model, names = tuple(card.class_names), tuple(names)
    if model == names or default_class_names(card.num_classes) == model:
        return None
    if names == default_class_names(len(names) + 1) or not set(names) <= set(model):
        return None
    return [0] + [model.index(name) + 1 for name in names]


def class_names_mismatch(card, names):
    """How the model's classes and `names` (labels 1.., e.g. a dataset's) differ, as text to
    follow "<model> and <data>", or None when they agree. Where they differ, the model's label
    i would be scored (or trained) as the data's label i. Unnamed classes (`class_1`, ...) on
    either side, and a different count (the callers' own error), are not compared."""
    model, names = tuple(card.class_names), tuple(names)
    unnamed = default_class_names(card.num_classes)
    if len(model) != len(names) or model == names or unnamed in (model, names):
        return None
    differ = [(i, m, d) for i, (m, d) in enumerate(zip(model, names), start=1) if m != d]
    kind = 'the same classes in another order' if sorted(model) == sorted(names) else 'other names'
    shown = '; '.join(
        f'label {i} is {m!r} in the model, {d!r} in the data' for i, m, d in differ[:3]
    )
    more = f' (and {len(differ) - 3} more)' if len(differ) > 3 else ''
    return f'name their classes differently ({kind}): {shown}{more}'


def from_registry(
    model_name,
    num_classes=None,
    class_names=None,
    anchor_sizes=None,
    depth_multiplier=None,
    **param_overrides,
):
    """A card of a registered net with its defaults and the given changes.

    anchor_sizes: a preset name of `ssd_params.ANCHOR_SIZE_PRESETS` (its sizes and other anchor
      settings, see `ssd_params.anchor_preset_params`), or None;
    class_names: names of labels 1.. (default `class_<id>`; their count sets num_classes when
    num_classes is None).
    """
    cls = nets_factory.get_network(model_name)
    params = cls.default_params
    if num_classes is None and class_names:
        num_classes = len(class_names) + 1
    if num_classes is not None:
        params = params._replace(num_classes=int(num_classes))
    if anchor_sizes:
        params = params._replace(**ssd_params_lib.anchor_preset_params(model_name, anchor_sizes))
    if depth_multiplier is not None:
        if model_name != 'ssd_300_mobilenet':
            raise CardError('--depth_multiplier applies to ssd_300_mobilenet only.')
        params = params._replace(depth_multiplier=float(depth_multiplier))
    params = params._replace(**{k: v for k, v in param_overrides.items() if v is not None})
    # Before the class names are built: 10**11 default names exhausted memory before the card's
    # own check refused the count.
    _check_params(model_name, params)
    pipeline = preprocessing_factory.get_preprocessing(model_name)
    names = tuple(class_names) if class_names else default_class_names(params.num_classes)
    return ModelCard(
        model_name, params, tuple(float(m) for m in pipeline.mean_rgb), float(pipeline.scale), names
    )


def new_card_id():
    """A new card's id: 32 lowercase hex digits (`CARD_ID`)."""
    return uuid.uuid4().hex


def git_commit():
    """The project's git commit (with '+dirty' when the tree has changes), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ['git', '-C', root, 'rev-parse', 'HEAD'],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ('+dirty' if dirty else '')


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# The anchor settings besides the sizes (anchor_size_preset) that a card can edit.
_ANCHOR_LAYOUT = ('anchor_ratios', 'anchor_steps', 'anchor_offset')


def describe(card):
    """One line: model, classes, input, anchors (the size preset's name, and which of the
    net's other anchor settings the card changes: a preset's name alone said the net's ratios)."""
    preset = card.anchor_size_preset or 'custom'
    default = ssd_params_lib.params_to_dict(
        nets_factory.get_network(card.model_name).default_params
    )
    own = ssd_params_lib.params_to_dict(card.params)
    edited = [name[len('anchor_') :] for name in _ANCHOR_LAYOUT if own[name] != default[name]]
    if edited:
        preset = f'{preset} sizes with its own {" and ".join(edited)}'
    return (
        f'{card.model_name}, {card.num_classes - 1} classes ({texts.listed(card.class_names, 5)}), '
        f'input {card.input_shape[0]}x'
        f'{card.input_shape[1]}, depth multiplier {card.params.depth_multiplier:g}, anchors '
        f'{preset}'
    )
