"""The model flags the scripts share, and how they meet the model card.

With a card (found beside the checkpoint, or given with --model_card) the model flags are
optional; one that contradicts the card is an error naming the flag, both values and the card's
file, unless --override_model_card is given (then the log says what was overridden). Without a
card (the older TF port's and TF-Slim checkpoints) the model comes from the flags, as it always
did, and the log says so. Detection settings and the compute dtype are choices of the run: given,
they replace the card's (logged).
"""

import dataclasses
import difflib
import math
import numbers
from typing import Optional

from absl import flags

from datasets import labels as labels_lib
from model import card as card_lib
from model import checkpoints
from nets import nets_factory
from nets import ssd_common
from nets import ssd_params as ssd_params_lib

DEFAULT_MODEL = 'ssd_300_vgg'
# The anchor preset the older TF port ran its VGG checkpoints with.
OLDER_PORT_PRESET = 'tf_port_coco'
DETECTION_FIELDS = ('select_threshold', 'nms_threshold', 'top_k', 'keep_top_k')
# --num_classes counts the background, as the model card does (`ssd_params.check_params`).
NUM_CLASSES_RANGE = (
    f'an integer in [2, {ssd_params_lib.MAX_CLASSES}]: one class and the background at least'
)
# The most images of one batch of eval, detect and export: a batch is one tensor through the net
# (its memory grows with it), and more images per call gain no speed.
MAX_BATCH_SIZE = 1024
# The most threads of a --num_threads, --num_readers or --num_preprocessing_threads: TensorFlow
# takes them as int32, and 100000 reader threads hung the input pipeline.
MAX_THREADS = 1024
# The most images for int8 calibration: they are held in memory at the net's input size.
MAX_CALIBRATION_IMAGES = 10000


def define_moving_average_flag():
    """Defines --moving_average_decay of the scripts that read a training's checkpoint."""
    flags.DEFINE_float(
        'moving_average_decay',
        None,
        'Use the exponential moving averages of the trainable weights that a training with '
        '--moving_average_decay saved beside them (any value in (0, 1) selects them; give the '
        "training's).",
    )
    register_moving_average_validator()


def register_moving_average_validator():
    """--moving_average_decay (defined by the caller: training's means another thing than the
    readers') must lie in (0, 1) or be unset: 0 would silently mean no averages."""
    flags.register_validator(
        'moving_average_decay',
        lambda value: value is None or 0 < value < 1,
        message='--moving_average_decay must lie in (0, 1) (e.g. 0.9999), or be left unset.',
    )


def define_iou_rule(threshold_flag, prefix=''):
    """--iou_rule, '>=' (the VOC devkit) or '>': a validated string, not an enum (absl shows an
    enum's values as '<>=|>>'). `threshold_flag`: the flag of the IoU it compares with."""
    flags.DEFINE_string(
        'iou_rule',
        '>=',
        f"{prefix}When a detection matches a ground-truth box at --{threshold_flag}: '>=' (IoU at "
        f"least the threshold, the VOC devkit) or '>' (above it, common Python ports).",
    )
    flags.register_validator(
        'iou_rule',
        lambda value: value in ('>=', '>'),
        message="--iou_rule must be '>=' (the VOC devkit) or '>' (common Python ports); quote it "
        "in the shell: --iou_rule='>'.",
    )


def define_remove_difficult(prefix=''):
    """--remove_difficult: ignore difficult objects in the VOC metrics (the devkit), or count them
    as ordinary objects."""
    flags.DEFINE_boolean(
        'remove_difficult',
        True,
        f'{prefix}Ignore difficult objects in the metrics (devkit); false counts them as '
        f'ordinary objects.',
    )


def register_bound(name, test, allowed, optional=False):
    """--`name` (a float flag) must be a finite number for which `test` holds (or unset, where
    `optional`): absl's lower_bound / upper_bound let nan and inf through, and a value out of
    range ran to the end (rc 0) or failed late without naming the flag. absl's error names the
    flag, its value and `allowed`."""

    def valid(value):
        if value is None:
            return optional
        return math.isfinite(value) and bool(test(value))

    flags.register_validator(
        name,
        valid,
        message='--%s must %s%s.' % (name, allowed, ', or be left unset' if optional else ''),
    )


def register_depth_multiplier_validator():
    """--depth_multiplier (the trainer defines its own) must lie in (0, MAX_DEPTH_MULTIPLIER],
    the model card's bound, or be unset: out of it, the run failed late on the card's check of
    its "SSD parameter depth_multiplier", or was told to pass --override_model_card."""
    register_bound(
        'depth_multiplier',
        lambda v: 0 < v <= ssd_params_lib.MAX_DEPTH_MULTIPLIER,
        'lie in (0, %g] (e.g. 0.5)' % ssd_params_lib.MAX_DEPTH_MULTIPLIER,
        optional=True,
    )


def register_gpu_memory_fraction_validator(optional):
    """--gpu_memory_fraction (defined by the caller, with its default) must lie in (0, 1]: TF
    takes 0 for all of the GPU's memory (eval: memory growth), a negative value or nan without a
    word, and more than 1 for CUDA unified memory beyond the GPU's, which a fraction is not."""
    register_bound(
        'gpu_memory_fraction',
        lambda v: 0 < v <= 1,
        "lie in (0, 1] (a fraction of the GPU's memory, e.g. 0.8)",
        optional=optional,
    )


def define_model_flags(select_threshold=None, select_threshold_help=None):
    """Defines the model, class-name, detection and compute-dtype flags in absl's FLAGS."""
    flags.DEFINE_string(
        'model_card',
        None,
        'A model card (model.json, or the folder holding it: a train dir, an export) to use '
        'instead of the one found beside the checkpoint; the JSON older caffe_to_tensorflow.py '
        'versions wrote (<ckpt>.json) is read too.',
    )
    flags.DEFINE_alias('model_config', 'model_card')
    flags.DEFINE_boolean(
        'override_model_card',
        False,
        'Let --model_name, --num_classes, '
        '--depth_multiplier and --anchor_sizes replace the card\'s values '
        '(logged) instead of being an error when they differ.',
    )
    flags.DEFINE_string(
        'model_name',
        None,
        'Net: %s (default: the model card\'s, else %s).'
        % (', '.join(sorted(nets_factory.networks_map)), DEFAULT_MODEL),
    )
    flags.DEFINE_integer(
        'num_classes',
        None,
        'Classes including background (default: the model '
        'card\'s, else the dataset\'s or the labels file\'s, else the net\'s).',
        lower_bound=2,
        upper_bound=ssd_params_lib.MAX_CLASSES,
    )
    flags.DEFINE_float(
        'depth_multiplier',
        None,
        'Width multiplier of ssd_300_mobilenet (default: the model card\'s, else 1).',
    )
    register_depth_multiplier_validator()
    flags.DEFINE_string(
        'anchor_sizes',
        None,
        'Anchor size preset (default: the model card\'s, '
        'else the net\'s): %s.' % anchor_presets_help(),
    )
    flags.DEFINE_string(
        'labels_file',
        None,
        'Class names, one per line (label 1 first), or a TF Object Detection API '
        'label_map.pbtxt; default: the model card\'s, else the dataset\'s.',
    )
    flags.DEFINE_float(
        'select_threshold',
        select_threshold,
        select_threshold_help
        or 'Minimum class score of a detection (default: the model card\'s, else 0.01).',
    )
    flags.DEFINE_float(
        'nms_threshold', None, 'NMS IoU threshold (default: the model card\'s, else 0.45).'
    )
    flags.DEFINE_integer(
        'top_k', None, 'Candidates per class before NMS (default: the model card\'s, else 400).'
    )
    flags.DEFINE_alias('select_top_k', 'top_k')
    flags.DEFINE_integer(
        'keep_top_k',
        None,
        'Detections per image after NMS, across classes (default: the model card\'s, else 200).',
    )
    flags.DEFINE_enum(
        'compute_dtype',
        'float32',
        list(ssd_common.COMPUTE_DTYPES),
        'Arithmetic of the net: bfloat16 for CPUs with AVX-512 BF16 or AMX, float16 '
        'for GPUs (scores, decoding and NMS stay float32).',
    )


def anchor_presets_help():
    return '; '.join(
        '%s: %s' % (m, ', '.join(sorted(p)))
        for m, p in sorted(ssd_params_lib.ANCHOR_SIZE_PRESETS.items())
    )


@dataclasses.dataclass
class ModelFlags:
    """The values of the model flags (None: not given)."""

    model_card: Optional[str] = None
    override_model_card: bool = False
    model_name: Optional[str] = None
    num_classes: Optional[int] = None
    depth_multiplier: Optional[float] = None
    anchor_sizes: Optional[str] = None
    labels_file: Optional[str] = None
    select_threshold: Optional[float] = None
    nms_threshold: Optional[float] = None
    top_k: Optional[int] = None
    keep_top_k: Optional[int] = None
    compute_dtype: str = 'float32'
    # The flags given on the command line (None: unknown), to tell them from a script's defaults.
    given: Optional[frozenset] = None

    @classmethod
    def from_flags(cls, flag_values=None):
        flag_values = flag_values or flags.FLAGS
        names = [f.name for f in dataclasses.fields(cls) if f.name != 'given']
        return cls(
            **{name: flag_values[name].value for name in names},
            given=frozenset(name for name in names if flag_values[name].present),
        )


def check_num_classes(value):
    """Raises CardError naming --num_classes unless `value` is None or in [2, MAX_CLASSES]: before
    anything builds its class names (a huge count exhausted memory)."""
    if value is not None and not (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and 2 <= value <= ssd_params_lib.MAX_CLASSES
    ):
        raise card_lib.CardError(f'--num_classes={value}: it must be {NUM_CLASSES_RANGE}.')


def check_choices(flag, values, known, noun):
    """Raises ValueError naming `flag` for an empty `values` or a value not in `known` (the
    `noun`s a flag may name: formats, metrics, nets), suggesting the closest."""
    if not values:
        raise ValueError(f'{flag} is empty; give any of {", ".join(known)}.')
    twice = sorted({str(value) for value in values if list(values).count(value) > 1})
    if twice:  # it was done (and logged) twice
        raise ValueError(f'{flag} names {", ".join(twice)} more than once; name each once.')
    for value in values:
        if value not in known:
            close = difflib.get_close_matches(str(value).lower(), known, n=2, cutoff=0.6)
            hint = f' (did you mean {" or ".join(close)}?)' if close else ''
            raise ValueError(
                f'{flag}: unknown {noun} {value!r}{hint}; the {noun}s are {", ".join(known)}.'
            )


def check_model_name(name):
    """Raises ValueError naming --model_name, with the closest registered nets, unless `name` is
    unset or a registered net: checked with the flags, before a dataset, card or checkpoint is
    read (a typo failed after them, without a suggestion)."""
    if name:
        check_choices('--model_name', [name], sorted(nets_factory.networks_map), 'net')


def check_anchor_sizes(model_name, preset):
    """Raises ValueError naming --anchor_sizes, with the closest presets, unless `preset` is unset
    or a preset of `model_name` (of any net when the card will name it): checked with the flags
    (a typo failed after the dataset was read)."""
    if not preset:
        return
    presets = ssd_params_lib.ANCHOR_SIZE_PRESETS
    if model_name in presets:
        nets = sorted(m for m, named in presets.items() if preset in named)
        if nets and model_name not in nets:  # not a typo: another net's preset
            raise ValueError(
                f'--anchor_sizes={preset} is a preset of {", ".join(nets)}, not of '
                f'{model_name}; the {model_name} presets are '
                f'{", ".join(sorted(presets[model_name]))}.'
            )
        check_choices(
            '--anchor_sizes', [preset], sorted(presets[model_name]), f'{model_name} preset'
        )
    else:
        check_choices('--anchor_sizes', [preset], sorted(set().union(*presets.values())), 'preset')


def check_detection_flags(values):
    """Raises CardError naming the first detection flag (--select_threshold, --nms_threshold,
    --top_k, --keep_top_k) of `values` (ModelFlags) out of its range: before a card is read and
    before the replacement of its settings is logged."""
    card_lib.DetectionSettings(
        **{k: getattr(values, k) for k in DETECTION_FIELDS if getattr(values, k) is not None}
    )


def check_precision_flags(kind, flag_values=None):
    """Raises ValueError for a precision or model-card flag given on the command line
    (`flag_values`, default absl's) that the model would ignore silently: `kind` is the exported
    model's (`inference.detection.exported_model_kind`; None for a checkpoint). The structure
    flags are compared with an export's card once it is read (`check_exported_structure`)."""
    flag_values = flag_values or flags.FLAGS
    card_flags = [f'--{n}' for n in ('model_card', 'override_model_card') if flag_values[n].present]
    if kind and card_flags:
        raise ValueError(
            f'{" and ".join(card_flags)} {"describe" if len(card_flags) > 1 else "describes"} '
            'the model built from a checkpoint; an exported model is described by the '
            f'metadata.json it was exported with: leave {"them" if len(card_flags) > 1 else "it"} '
            'out.'
        )
    if kind and flag_values['compute_dtype'].present:
        raise ValueError(
            '--compute_dtype sets the arithmetic of the graph built from a checkpoint; an '
            'exported model computes as it was exported (export_ssd_network.py '
            '--compute_dtype), an OpenVINO model as --openvino_precision says.'
        )
    if kind != 'openvino_model' and flag_values['openvino_precision'].present:
        this = {
            None: 'a checkpoint',
            'frozen_graph': 'a frozen graph',
            'saved_model_dir': 'a SavedModel',
            'tflite_model': 'a TFLite model',
        }.get(kind, 'not one')
        raise ValueError(
            f'--openvino_precision applies to an OpenVINO model (.xml); this model is {this}.'
        )


def check_model_flags(values):
    """The checks of the model flags (`values`: ModelFlags) that need no card, dataset or
    checkpoint, for a script to run with its flag checks: --model_name, --num_classes,
    --anchor_sizes and the detection settings. Raises ValueError (CardError) naming the flag."""
    check_model_name(values.model_name)
    check_num_classes(values.num_classes)
    check_anchor_sizes(values.model_name, values.anchor_sizes)
    check_detection_flags(values)


def _flag_value_of(card, name, value):
    """(card's value, flag's value in the card's terms) of a structure flag."""
    if name == 'model_name':
        nets_factory.get_network(value)  # Unknown name (a typo): that error, not a contradiction.
        return card.model_name, value
    if name == 'num_classes':
        return card.num_classes, int(value)
    if name == 'depth_multiplier':
        return card.params.depth_multiplier, float(value)
    check_anchor_sizes(card.model_name, value)  # Not the card's net's: that error.
    return card.anchor_size_preset or f'sizes {card.params.anchor_sizes}', value


def apply_structure_flags(card, values, path, log, fix=None):
    """The card with the structure flags applied (override) or checked (error on contradiction).

    `fix`: what the error tells to do to get the flag's value instead of dropping it (default:
    pass --override_model_card, which the trainer does not have: a resumed model keeps its shape).
    """
    for name in ('model_name', 'num_classes', 'depth_multiplier', 'anchor_sizes'):
        value = getattr(values, name)
        if value is None:
            continue
        theirs, ours = _flag_value_of(card, name, value)
        if theirs == ours:
            continue
        if not values.override_model_card:
            if name == 'num_classes':  # the card's summary line counts the classes alone
                theirs = f'{theirs} ({theirs - 1} classes and the background)'
            raise card_lib.CardError(
                f'--{name}={value} contradicts the model card {path}, which says {theirs}. Drop '
                f'--{name} (the card describes the model), or '
                f'{fix or "pass --override_model_card"} to use --{name}={value}.'
            )
        log(f'--override_model_card: {name} {theirs} (card {path}) -> {value}')
        if name == 'model_name':
            keep = {'num_classes': card.num_classes, 'class_names': card.class_names}
            card = card_lib.from_registry(value, **keep).replace(
                detection=card.detection, card_id=card.card_id, category_ids=card.category_ids
            )
        elif name == 'num_classes':
            check_num_classes(value)  # before its class names are built
            card = card.replace(
                params=card.params._replace(num_classes=int(value)),
                class_names=card_lib.default_class_names(int(value)),
                category_ids=None,
            )
        elif name == 'depth_multiplier':
            card = card.with_params(depth_multiplier=float(value))
        else:
            card = card.with_params(**ssd_params_lib.anchor_preset_params(card.model_name, value))
    return card


def check_exported_structure(card, values, card_path):
    """Raises CardError for a structure flag of `values` (--model_name, --num_classes,
    --depth_multiplier, --anchor_sizes) that contradicts an exported model's card (read from
    `card_path`, its metadata.json): the export is the net it was exported as, so the flag
    would be ignored; running its checkpoint with the flag would not fit either (the weights are
    that net's). Flags that agree pass."""
    apply_structure_flags(
        card,
        dataclasses.replace(values, override_model_card=False),
        card_path,
        log=None,
        fix='export a checkpoint trained with it (export_ssd_network.py)',
    )


def with_labels_file(card, labels_file, card_path=None):
    """The card (read from `card_path`, named when the class counts differ) with the class names
    of a labels file (one name per line, label 1 first; a label map's ids its category ids)."""
    model = f'the model card {card_path}' if card_path else "the model's card"
    return _with_names(card, labels_lib.read_class_list(labels_file), labels_file, model)


def _class_names(card, values, labels, dataset, card_path):
    """Class names: the labels file's (`labels`, read from --labels_file: (names, ids)), else the
    card's, else the dataset's (same count)."""
    model = card_path and f'the model card {card_path}'
    if labels is not None:
        return _with_names(card, labels, values.labels_file, model)
    if dataset is not None and card.class_names == card_lib.default_class_names(card.num_classes):
        return _with_names(
            card,
            (dataset.class_names, None),
            f'dataset {dataset.name} split {dataset.split_name} in {dataset.dataset_dir}',
            model,
        )
    return card


def _with_names(card, labels, source, model):
    """The card with `labels` (names, ids: `labels_lib.read_class_list`'s; ids None keep the
    card's); `model`: what gave the class count ('the model card <file>'); None: the flags."""
    names, ids = labels
    count = card.num_classes - 1
    if len(names) == count:
        if ids is None:
            return card.replace(class_names=tuple(names))
        return card.replace(class_names=tuple(names), category_ids=ids)
    if model:
        # Not --num_classes, which would contradict the card: the names must meet its count.
        raise card_lib.CardError(
            f'{source} names {len(names)} classes but {model} says the model has {count}; '
            f'pass --labels_file with {count} names, one per line, label 1 first.'
        )
    raise card_lib.CardError(
        f'{source} names {len(names)} classes but the model has {count} '
        f'(num_classes={card.num_classes} counts the background); pass --num_classes='
        f'{len(names) + 1} if the model was trained with these classes.'
    )


def detection_changes_line(detection, changed, given=None):
    """The log line of detection settings `changed` ({name: value}) replacing the card's
    `detection`; `given`: the flags given on the command line (others are marked as the
    script's default), None when unknown."""
    default = " (this script's default)"
    return "detection settings of this run replace the card's: " + ', '.join(
        f'{k} {getattr(detection, k)} -> {v}'
        + (default if given is not None and k not in given else '')
        for k, v in changed.items()
    )


def resolve_card(values, checkpoint_path=None, dataset=None, log=print):
    """The model card of a run: the checkpoint's card with the flags checked, else the flags'.

    Args:
      values: ModelFlags.
      checkpoint_path: the checkpoint (prefix, file or directory) whose card is looked for.
      dataset: a `DetectionDataset` giving the class count and names when there is no card.
      log: callable taking one line.
    Raises:
      CardError: a flag contradicts the card, unreadable card, class-name count mismatch.
    """
    check_num_classes(values.num_classes)
    check_detection_flags(values)  # before the card's line and the replacement's are logged
    path = values.model_card or card_lib.find_for_checkpoint(checkpoint_path)
    # Read once: a label map's note on its ids was logged twice.
    labels = labels_lib.read_class_list(values.labels_file) if values.labels_file else None
    if path:
        card = card_lib.load(path)
        log(f'model card {path}: {card_lib.describe(card)}')
        card = apply_structure_flags(card, values, path, log)
    else:
        if checkpoint_path:  # the error is the path, not a model built from the flags
            checkpoints.resolve_checkpoint(checkpoint_path)
        num_classes = values.num_classes
        if num_classes is None and dataset is not None:
            num_classes = dataset.num_classes
        if num_classes is None and labels is not None:
            num_classes = len(labels[0]) + 1
        card = card_lib.from_registry(
            values.model_name or DEFAULT_MODEL,
            num_classes,
            anchor_sizes=values.anchor_sizes,
            depth_multiplier=values.depth_multiplier,
        )
    # --override_model_card --num_classes: the flag, not the card, counts the classes.
    overridden = values.override_model_card and values.num_classes is not None
    card = _class_names(card, values, labels, dataset, None if overridden else path)
    if not path:  # with the class names it runs with (the dataset's, a labels file's)
        log(
            f'no model card found for {checkpoint_path}; the model comes from the flags: '
            f'{card_lib.describe(card)}'
        )
        preset = card.anchor_size_preset
        if checkpoint_path and values.anchor_sizes is None and preset != OLDER_PORT_PRESET:
            if OLDER_PORT_PRESET in ssd_params_lib.ANCHOR_SIZE_PRESETS.get(card.model_name, {}):
                # Card-less VGG weights are most often the older TF port's checkpoints.
                log(
                    f'a checkpoint of the older TF port (no card, the same variable names) ran '
                    f'there with the anchors of --anchor_sizes={OLDER_PORT_PRESET}, not these '
                    f'{preset}: for one of those, evaluate both and keep the better '
                    '(checkpoints/README.md)'
                )
    changed = {
        k: getattr(values, k)
        for k in DETECTION_FIELDS
        if getattr(values, k) is not None and getattr(values, k) != getattr(card.detection, k)
    }
    if changed and path:
        log(detection_changes_line(card.detection, changed, values.given))
    if path and values.compute_dtype != card.compute_dtype:
        log(
            f'the net runs in {values.compute_dtype} (--compute_dtype); the card says {card.compute_dtype}'
        )
    return card.with_detection(**changed).replace(compute_dtype=values.compute_dtype)
