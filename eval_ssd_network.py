r"""Evaluates SSD checkpoints: VOC07/VOC12 mAP (devkit rules) and COCO AP.

One checkpoint (a prefix, one of its files, or a directory -> its latest):
  python eval_ssd_network.py --checkpoint_path=train/model.ckpt-120000 --eval_dir=eval \
      --dataset_name=pascalvoc_2007 --dataset_split_name=test --dataset_dir=tfrecords \
      --model_name=ssd_300_vgg
Beside a trainer, every checkpoint it writes, once each (see evaluation/watcher.py):
  python eval_ssd_network.py --wait_for_checkpoints --checkpoint_path=train --eval_dir=eval \
      ... --num_threads=2 --eval_timeout=3600 --final_step=120000
The model comes from its card (model.json in the trainer's folder, <ckpt>.model.json beside a
converted checkpoint; see model/card.py): no model flags needed. A checkpoint without a card (the
older TF port's) is built from --model_name, --num_classes, --depth_multiplier, --anchor_sizes.

An exported model (export_ssd_network.py), to check that it keeps the checkpoint's mAP; its
metadata.json gives the model and the detection settings it was exported with:
  python eval_ssd_network.py --exported_model=export/model_openvino.xml --eval_dir=eval/ov \
      --dataset_name=pascalvoc_2007 --dataset_split_name=test --dataset_dir=tfrecords \
      [--openvino_precision=bf16]      # or a frozen_graph.pb, a saved_model/ folder, a .tflite

Outputs in --eval_dir: results.json/.txt, comp4_det_<split>_<class>.txt, coco_*.json (with
--metrics=coco), pr_curves/, TensorBoard scalars (see evaluation/evaluate.py).
"""

import math

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
import os

from absl import flags
import tensorflow as tf

from datasets import dataset_factory
from evaluation import evaluate
from evaluation import exported
from evaluation import input as eval_input
from evaluation import outputs as eval_outputs
from evaluation import watcher
from inference import detection
from model import card as card_lib
from model import checkpoints
from model import cli
from tf_extended import folder_lock
from tf_extended import signals
from tf_extended import tf_errors

FLAGS = flags.FLAGS
# The bounds of the int64 count of images to take and of the watcher's sleep: an error naming the
# flag, not an OverflowError traceback or a watcher spinning a core.
INT64_MAX = 2**63 - 1
MIN_INTERVAL_SECS = 0.1
MAX_INTERVAL_SECS = 86400.0
flags.DEFINE_string(
    'checkpoint_path',
    None,
    'Checkpoint prefix or file, or a directory (its latest; '
    'the watched folder with --wait_for_checkpoints).',
)
flags.DEFINE_string('eval_dir', None, 'Where results and summaries are written.')
flags.DEFINE_string('dataset_name', 'pascalvoc_2007', 'Dataset registry name.')
flags.DEFINE_string('dataset_split_name', 'test', 'Split to evaluate.')
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_float('matching_threshold', 0.5, 'IoU threshold of a true positive (VOC).')
# The metrics' own bound (tf_extended/voc_metrics.py), at parse time: it failed after the model
# was loaded, naming their `iou_threshold`.
cli.register_bound('matching_threshold', lambda v: 0 < v <= 1, 'lie in (0, 1] (an IoU, e.g. 0.5)')
cli.define_iou_rule('matching_threshold')
flags.DEFINE_enum(
    'eval_resize',
    'WARP_RESIZE',
    list(eval_input.BATCHABLE_RESIZE_MODES),
    'Evaluation resize mode of the preprocessing.',
)
cli.define_remove_difficult()
flags.DEFINE_float('gpu_memory_fraction', None, 'Per-process GPU memory fraction (default: grow).')
cli.register_gpu_memory_fraction_validator(optional=True)
flags.DEFINE_list('metrics', ['voc07', 'voc12'], 'Any of voc07, voc12, coco.')
flags.DEFINE_integer(
    'num_threads',
    None,
    'Intra/inter-op and tf.data threads (run beside training).',
    lower_bound=1,
    upper_bound=cli.MAX_THREADS,
)
flags.DEFINE_enum(
    'data_format',
    'NHWC',
    ['NHWC', 'NCHW'],
    'Layout of the net (NCHW: a GPU, or a CPU with oneDNN on).',
)
flags.DEFINE_boolean('pr_curves', True, 'Write per-class precision/recall PNGs.')
flags.DEFINE_boolean(
    'wait_for_checkpoints',
    False,
    'Watch --checkpoint_path (a directory) and evaluate each new checkpoint once.',
)
flags.DEFINE_float(
    'eval_interval_secs',
    60.0,
    f'Watcher: seconds between scans of the directory, in [{MIN_INTERVAL_SECS:g}, '
    f'{MAX_INTERVAL_SECS:g}] (less would keep a core busy beside the trainer).',
)
flags.register_validator(
    'eval_interval_secs',
    lambda value: value is not None and MIN_INTERVAL_SECS <= value <= MAX_INTERVAL_SECS,
    message=f'--eval_interval_secs must be a number of seconds in [{MIN_INTERVAL_SECS:g}, '
    f'{MAX_INTERVAL_SECS:g}] (e.g. 60; less than {MIN_INTERVAL_SECS:g} would keep a core busy '
    f'scanning the folder).',
)
flags.DEFINE_float(
    'eval_timeout',
    None,
    'Watcher: stop after this many seconds without a new checkpoint (default: never).',
)
flags.register_validator(
    'eval_timeout',
    lambda value: value is None or (math.isfinite(value) and value >= 0),
    message='--eval_timeout must be a finite number of seconds >= 0 (e.g. 3600), or be left '
    'unset to wait for new checkpoints without end.',
)
flags.DEFINE_integer(
    'final_step',
    None,
    'Watcher: stop once the checkpoint of this step (the trainer\'s last) is evaluated.',
    lower_bound=0,
)
flags.DEFINE_alias('max_number_of_steps', 'final_step')
flags.DEFINE_integer(
    'input_cache_mb',
    1024,
    'Watcher: memory (MiB) for the split\'s decoded and preprocessed input, decoded once '
    'before the first evaluation so that the evaluations do not decode it (float32: 1.03 MiB '
    'per image at 300x300, 3 MiB at 512x512; the first batches up to it; 0: none).',
    lower_bound=0,
)
flags.DEFINE_enum(
    'best_metric',
    None,
    list(eval_outputs.METRICS),
    'Watcher: metric choosing eval_dir/best (default: the first of --metrics).',
)
cli.define_model_flags()
cli.define_moving_average_flag()
flags.DEFINE_integer(
    'batch_size',
    32,
    f'Images per batch, at most {cli.MAX_BATCH_SIZE} (a batch is one tensor through the net: memory '
    f'grows with it; beyond that, more images per call gain no speed).',
    lower_bound=1,
    upper_bound=cli.MAX_BATCH_SIZE,
)
flags.DEFINE_integer(
    'max_num_batches',
    None,
    'Evaluate only this many batches (default, or 0: all).',
    lower_bound=0,
)
flags.register_multi_flags_validator(
    ['max_num_batches', 'batch_size'],
    lambda v: (
        not v['max_num_batches']
        or not v['batch_size']
        or v['max_num_batches'] * v['batch_size'] <= INT64_MAX
    ),
    message=f'--max_num_batches times --batch_size (the images evaluated) must be at most '
    f'{INT64_MAX} (2**63 - 1); give 0 or leave --max_num_batches unset to evaluate the whole '
    f'split.',
)
flags.DEFINE_string(
    'exported_model',
    None,
    'Evaluate an export of export_ssd_network.py instead of a checkpoint: an OpenVINO .xml, a '
    'frozen graph .pb, a SavedModel folder or a TFLite .tflite (float or int8; metadata.json '
    'beside it).',
)
flags.DEFINE_enum(
    'openvino_precision',
    'fp32',
    ['fp32', 'bf16'],
    'OpenVINO arithmetic of --exported_model=*.xml: bf16 on CPUs with AVX-512 BF16 or AMX.',
)
flags.mark_flags_as_required(['eval_dir', 'dataset_dir'])
flags.register_multi_flags_validator(
    ['checkpoint_path', 'exported_model'],
    lambda v: bool(v['checkpoint_path']) != bool(v['exported_model']),
    message='give exactly one of --checkpoint_path and --exported_model.',
)


def _is_export_folder(path):
    return os.path.isfile(os.path.join(path, card_lib.EXPORT_METADATA_FILE))


def _not_evaluated(path, problem, folder):
    """The error for a `path` that eval cannot evaluate (`problem` says why), naming the models
    that --exported_model evaluates in `folder` when it is an export folder."""
    found = detection.exports_in(folder) if _is_export_folder(folder) else {}
    models = list(found)  # --exported_model evaluates every kind of export
    if models:
        fix = 'pass ' + ' or '.join(f'--exported_model={m}' for m in models)
    else:
        fix = (
            'export the checkpoint with export_ssd_network.py --formats=frozen_graph (or '
            'openvino, saved_model) and evaluate that'
        )
    return ValueError(f'{path}: {problem}; {fix}.')


def _exported_kind(path):
    """The kind of --exported_model, one that eval evaluates."""
    if not os.path.lexists(path):
        raise ValueError(
            f'--exported_model={path}: no such file or folder; pass '
            f'{checkpoints.export_kinds_text()}.'
        )
    folder = detection.saved_model_folder(path)
    if folder:
        raise ValueError(
            f'{path} is the graph file of the SavedModel folder {folder}; pass '
            f'--exported_model={folder}.'
        )
    kind = detection.file_kind(path)
    if kind:
        return kind
    folder = os.path.dirname(path) or '.'
    if _is_export_folder(path):
        problem, folder = 'an export folder, not one of its models', path
    else:
        problem = f'not a model eval evaluates by its file type ({checkpoints.export_kinds_text()})'
    raise _not_evaluated(path, problem, folder)


def _evaluate_exported():
    """--exported_model: the model's own card (metadata.json) and detection settings."""
    path = FLAGS.exported_model
    kind = _exported_kind(path)
    # OpenVINO in throughput mode: the images of a batch (of different sizes) run concurrently.
    with detection.open_exported_model(
        path, kind, FLAGS.openvino_precision, FLAGS.num_threads, openvino_requests=0
    ) as detector:
        if detector.note:  # a metadata.json of an earlier export, not checked against the model
            print(detector.note, flush=True)
        card_path = detector.card_source  # read and checked as it loaded
        cli.check_exported_structure(detector.card, cli.ModelFlags.from_flags(), card_path)
        if FLAGS.labels_file:
            detector.card = cli.with_labels_file(detector.card, FLAGS.labels_file, card_path)
        description = {'kind': kind}
        if kind == 'openvino_model':
            description.update(
                requested_precision=FLAGS.openvino_precision,
                precision=detector.precision,
                matrix_units=detector.matrix_units,
                **({'int8': True} if detector.int8 else {}),
            )
        elif kind == 'tflite_model':
            description.update(precision=detector.precision)
        settings = _eval_settings(detector.card)
        exported.evaluate_exported(
            settings,
            detector,
            path,
            FLAGS.eval_dir,
            summary_dir=FLAGS.eval_dir,
            description=description,
        )


def _settings():
    """(EvalSettings, the checkpoint's prefix: None with --wait_for_checkpoints)."""
    values = cli.ModelFlags.from_flags()
    if FLAGS.wait_for_checkpoints and not values.model_card:
        # Started beside a trainer: its card comes before its first checkpoint.
        if not watcher.wait_for_card(
            FLAGS.checkpoint_path, FLAGS.eval_interval_secs, FLAGS.eval_timeout
        ):
            raise watcher.NothingEvaluated(
                f'no checkpoint evaluated: no model card or checkpoint appeared in '
                f'{FLAGS.checkpoint_path} for {FLAGS.eval_timeout:g} s (--eval_timeout). Is '
                f'--checkpoint_path the trainer\'s --train_dir, and is the trainer running?'
            )
    card_path = values.model_card or card_lib.find_for_checkpoint(FLAGS.checkpoint_path)
    # Without a card, the dataset gives the class count and names.
    dataset = (
        None
        if card_path
        else dataset_factory.get_dataset(
            FLAGS.dataset_name,
            FLAGS.dataset_split_name,
            FLAGS.dataset_dir,
            num_classes=FLAGS.num_classes,
        )
    )
    prefix = None
    if not FLAGS.wait_for_checkpoints:
        # Before the model is described (the card's, or the flags' without one): a wrong path is
        # the error, not a model built from the flags.
        prefix = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    card = cli.resolve_card(values, FLAGS.checkpoint_path, dataset)
    settings = _eval_settings(
        card,
        card_path=card_path,
        moving_average_decay=FLAGS.moving_average_decay,
        data_format=FLAGS.data_format,
        gpu_memory_fraction=FLAGS.gpu_memory_fraction,
    )
    return settings, prefix


def _eval_settings(card, **checkpoint_fields):
    """EvalSettings of `card` from the flags every evaluation reads; `checkpoint_fields`: the
    fields only a checkpoint's evaluation reads (card path, moving averages, data format, GPU
    memory), left at their defaults for an exported model."""
    return evaluate.EvalSettings(
        card=card,
        dataset_name=FLAGS.dataset_name,
        dataset_split_name=FLAGS.dataset_split_name,
        dataset_dir=FLAGS.dataset_dir,
        batch_size=FLAGS.batch_size,
        max_num_batches=FLAGS.max_num_batches,
        matching_threshold=FLAGS.matching_threshold,
        iou_rule=FLAGS.iou_rule,
        eval_resize=FLAGS.eval_resize,
        remove_difficult=FLAGS.remove_difficult,
        metrics=tuple(FLAGS.metrics),
        num_threads=FLAGS.num_threads,
        pr_curves=FLAGS.pr_curves,
        **checkpoint_fields,
    )


# Flags only the watcher (--wait_for_checkpoints) reads.
WATCHER_FLAGS = (
    'eval_interval_secs',
    'eval_timeout',
    'final_step',
    'best_metric',
    'input_cache_mb',
)


def _check_flags():
    """The checks of the flags that need no file: before --eval_dir is locked, a card, dataset
    or model is read, or anything is logged (a detection setting out of range was refused after
    the line saying it replaced the card's; an unknown metric or net after the card loaded)."""
    evaluate.check_metrics(FLAGS.metrics)  # before --best_metric is checked against them
    _check_watcher_flags()
    if os.path.lexists(FLAGS.eval_dir) and not os.path.isdir(FLAGS.eval_dir):
        raise ValueError(
            f'--eval_dir {FLAGS.eval_dir} is not a folder; pass the folder for the results (a new '
            'one is created).'
        )
    dataset_factory.check_dataset_name(FLAGS.dataset_name)
    cli.check_model_flags(cli.ModelFlags.from_flags())
    cli.check_precision_flags(
        (detection.file_kind(FLAGS.exported_model) or 'exported_model')
        if FLAGS.exported_model
        else None
    )


def _check_watcher_flags():
    """Watcher flags given without a watcher would be ignored silently: an error instead."""
    given = [f'--{name}' for name in WATCHER_FLAGS if FLAGS[name].present]
    given = [g.replace('--final_step', '--final_step (--max_number_of_steps)') for g in given]
    if FLAGS.wait_for_checkpoints and FLAGS.exported_model:
        raise ValueError(
            '--wait_for_checkpoints watches a training folder (--checkpoint_path); an exported '
            'model is evaluated once: drop --wait_for_checkpoints.'
        )
    if given and not FLAGS.wait_for_checkpoints:
        raise ValueError(
            f'{", ".join(given)} set(s) the watcher, which runs with --wait_for_checkpoints; '
            f'add it to watch --checkpoint_path, or drop {", ".join(given)} to evaluate once.'
        )
    if FLAGS.wait_for_checkpoints:  # before it waits for the trainer
        watcher.resolve_best_metric(FLAGS.best_metric, FLAGS.metrics)


def main(_):
    logs.absl_only()
    # The [eval] line names the checkpoint or model; TF's restore line would name the watcher's
    # staged copy (a temporary folder in --eval_dir).
    logs.drop_tensorflow_messages(checkpoints.RESTORE_RECORD)
    tf.compat.v1.disable_eager_execution()
    lock = folder_lock.FolderLock(FLAGS.eval_dir)
    try:
        _check_flags()
        if FLAGS.wait_for_checkpoints:  # before waiting for the trainer's card
            evaluate.check_eval_dir(FLAGS.eval_dir, FLAGS.checkpoint_path)
        # Before anything reads or writes --eval_dir: two evaluations into one folder would
        # rewrite each other's results (a watcher's ledger, history and best/).
        with signals.held():  # a Ctrl-C or SIGTERM as it is taken: released below
            lock = folder_lock.acquire(
                FLAGS.eval_dir,
                '--eval_dir',
                'watcher' if FLAGS.wait_for_checkpoints else 'evaluation',
            )
        if not FLAGS.wait_for_checkpoints and os.path.lexists(
            os.path.join(FLAGS.eval_dir, watcher.LEDGER_NAME)
        ):
            # Its results would sit among the watcher's (results.json beside the ledger, a second
            # event file at a step the watcher's has).
            raise ValueError(
                f'--eval_dir {FLAGS.eval_dir} is a watcher\'s (it holds {watcher.LEDGER_NAME}); '
                f'evaluate once into a folder of its own, e.g. {os.path.join(FLAGS.eval_dir, "once")}.'
            )
        if FLAGS.exported_model:
            _evaluate_exported()
            return
        # Export folders hold no checkpoint, and none will appear in them for the watcher.
        if _is_export_folder(FLAGS.checkpoint_path) and not checkpoints.latest_in_directory(
            FLAGS.checkpoint_path
        ):
            raise _not_evaluated(
                FLAGS.checkpoint_path,
                'an export folder, not a checkpoint (--checkpoint_path)',
                FLAGS.checkpoint_path,
            )
        settings, prefix = _settings()
        if FLAGS.wait_for_checkpoints:
            watcher.watch(
                settings,
                FLAGS.checkpoint_path,
                FLAGS.eval_dir,
                interval_secs=FLAGS.eval_interval_secs,
                timeout_secs=FLAGS.eval_timeout,
                final_step=FLAGS.final_step,
                best_metric=FLAGS.best_metric,
                lock=lock,
                input_cache_mb=FLAGS.input_cache_mb,
            )
        else:
            evaluate.check_eval_dir(FLAGS.eval_dir, os.path.dirname(prefix) or '.')
            evaluate.evaluate_checkpoint(
                settings, prefix, FLAGS.eval_dir, summary_dir=FLAGS.eval_dir
            )
    except tf_errors.RecordsError as err:
        logs.exit_error(f'{err}; {_records_failed()}')
    except (ValueError, OSError, checkpoints.CheckpointUnavailable) as err:
        logs.exit_error(err)
    finally:
        lock.release()


def _records_failed():
    """What is kept when reading the records failed, and what to do (bad records stay bad)."""
    fix = f'{tf_errors.FIX_RECORDS} run the same command'
    if FLAGS.wait_for_checkpoints:
        ledger = os.path.join(FLAGS.eval_dir, watcher.LEDGER_NAME)
        kept = (
            f'the checkpoints evaluated before are in {ledger}'
            if os.path.isfile(ledger)
            else 'nothing was written'
        )
        return f'the watcher stops and {kept}: {fix} to go on.'
    return f'nothing was written: {fix}.'


def _evaluated_any():
    """True when --eval_dir's ledger holds an evaluated checkpoint (an unreadable one counts: it
    is there to look at)."""
    if not os.path.lexists(os.path.join(FLAGS.eval_dir, watcher.LEDGER_NAME)):
        return False
    try:
        return bool(watcher.Ledger(FLAGS.eval_dir).evaluated())
    except (OSError, ValueError):
        return True


def _interrupted():
    if FLAGS.wait_for_checkpoints:
        if not _evaluated_any():
            return 'no checkpoint was evaluated; run the same command to watch again'
        return (
            f'the checkpoints evaluated so far are in {FLAGS.eval_dir} (eval_ledger.jsonl); '
            'run the same command to go on with the next one'
        )
    return (
        'no result of this evaluation was written (results appear all at once when it '
        'ends); run the same command again'
    )


if __name__ == '__main__':
    logs.run(main, _interrupted)
