r"""Trains an SSD network (TF-Slim train_image_classifier conventions, graph mode).

    python train_ssd_network.py --train_dir=logs/ssd300 --dataset_name=pascalvoc_0712 \
        --dataset_split_name=trainval --dataset_dir=tfrecords --model_name=ssd_300_vgg \
        --checkpoint_path=checkpoints/vgg_16.ckpt --checkpoint_model_scope=vgg_16 \
        --optimizer=momentum --learning_rate_decay_type=piecewise \
        --boundaries=80000,100000 --values=0.001,0.0001,0.00001 --batch_size=32 \
        --max_number_of_steps=120000

The model card (model.json: the net, anchors, classes, normalisation; see model/card.py) is
written into --train_dir before the first checkpoint; every later step reads it. A checkpoint
already in --train_dir means resume (global step, optimizer slots and the learning rate schedule
continue; --checkpoint_path is then ignored; a model flag contradicting the card is an error).
The trainer is training/trainer.py; this script only turns flags into its TrainSettings. See
--helpfull for every flag.
Distributed: --ps_hosts/--worker_hosts/--job_name/--task_index (or TF_CONFIG); worker 0 is the
chief and writes checkpoints and summaries; --sync_replicas makes each step average the gradients
of --replicas_to_aggregate distinct workers; every process exits by itself when the chief ends
(training/cluster.py, README "Several GPUs, several machines").
"""

import math
import os

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags
from absl import logging

from model import checkpoints
from model import cli
from nets import nets_factory
from nets import ssd_params as ssd_params_lib
from training import hooks
from training import optimization
from training import trainer
from tf_extended import tf_errors

FLAGS = flags.FLAGS
# The largest integer TF takes as int64 (global step, seeds): a flag beyond it would fail late
# with a TypeError traceback.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def D(name):
    """The default of a setting (training.trainer.TrainSettings holds them)."""
    value = trainer.TrainSettings.default(name)
    return list(value) if isinstance(value, tuple) else value


# General.
flags.DEFINE_string('train_dir', D('train_dir'), 'Where checkpoints and event logs are written.')
flags.DEFINE_integer(
    'num_clones',
    D('num_clones'),
    'Model clones on this machine (GPUs, or CPU clones).',
    lower_bound=1,
)
flags.DEFINE_boolean('clone_on_cpu', D('clone_on_cpu'), 'Put the clones on the CPU.')
flags.DEFINE_integer(
    'num_readers',
    D('num_readers'),
    'Shards read in parallel (the seeded order is the same for 1 to 4; more interleave more '
    'shards at a time, another order).',
    lower_bound=1,
    upper_bound=cli.MAX_THREADS,
)
flags.DEFINE_integer(
    'num_preprocessing_threads',
    D('num_preprocessing_threads'),
    'Parallel calls of the augmentation + encoding map (0: autotune).',
    lower_bound=0,
    upper_bound=cli.MAX_THREADS,
)
flags.DEFINE_integer(
    'log_every_n_steps',
    D('log_every_n_steps'),
    'Steps between log lines.',
    lower_bound=1,
    upper_bound=INT64_MAX,
)
flags.DEFINE_integer(
    'save_summaries_secs',
    D('save_summaries_secs'),
    'Seconds between TensorBoard summaries.',
    lower_bound=1,
)
flags.DEFINE_integer(
    'save_interval_secs',
    D('save_interval_secs'),
    'Seconds between checkpoints (unless --save_interval_steps is set).',
    lower_bound=1,
)
flags.DEFINE_integer(
    'save_interval_steps',
    D('save_interval_steps'),
    'Steps between checkpoints (overrides --save_interval_secs).',
    lower_bound=1,
    upper_bound=INT64_MAX,
)
flags.DEFINE_integer(
    'max_to_keep',
    D('max_to_keep'),
    'Checkpoints kept in train_dir.',
    lower_bound=1,
    upper_bound=INT64_MAX,
)
flags.DEFINE_float(
    'gpu_memory_fraction', D('gpu_memory_fraction'), 'Fraction of GPU memory per process.'
)
flags.DEFINE_integer(
    'seed',
    D('seed'),
    'Seed of initialisers, shuffling and augmentation (reproducible runs; not set = random).',
    lower_bound=INT64_MIN,
    upper_bound=INT64_MAX,
)
flags.DEFINE_boolean(
    'histograms', D('histograms'), 'Also write histograms of the trainable variables.'
)
# Distributed (between-graph replication).
flags.DEFINE_string(
    'ps_hosts', D('ps_hosts'), 'Comma-separated host:port of the parameter servers.'
)
flags.DEFINE_string('worker_hosts', D('worker_hosts'), 'Comma-separated host:port of the workers.')
flags.DEFINE_enum('job_name', D('job_name'), ['ps', 'worker'], 'This process\' job in the cluster.')
flags.DEFINE_integer(
    'task_index',
    D('task_index'),
    'This process\' index in its job; worker 0 is the chief.',
    lower_bound=0,
)
flags.DEFINE_boolean(
    'sync_replicas',
    D('sync_replicas'),
    'Synchronous steps: each averages the gradients of '
    '--replicas_to_aggregate distinct workers (default: asynchronous, each worker applies its own).',
)
flags.DEFINE_integer(
    'replicas_to_aggregate',
    D('replicas_to_aggregate'),
    'Distinct workers whose gradients a '
    'synchronous step averages (default: every worker; fewer: backup workers).',
    lower_bound=1,
)
flags.DEFINE_integer(
    'cluster_wait_secs',
    D('cluster_wait_secs'),
    'Longest wait for another process of a cluster: '
    'a worker for the chief to initialise the model, the chief for workers to join or to come '
    'back, every process for the chief\'s heartbeat. Then it stops with an error.',
    lower_bound=1,
)
# Loss.
flags.DEFINE_float('loss_alpha', D('loss_alpha'), 'Weight of the localisation loss.')
flags.DEFINE_float(
    'negative_ratio',
    D('negative_ratio'),
    'Hard negatives per positive (hard-negative mining; not with --focal_loss_gamma).',
)
flags.DEFINE_float(
    'match_threshold',
    D('match_threshold'),
    'IoU for an anchor to match a ground-truth box (a positive). The negatives (background) are '
    'the unmatched anchors below IoU 0.5, fixed: a threshold above 0.5 leaves the anchors in '
    'between ignored by the loss.',
)
flags.DEFINE_float(
    'label_smoothing', D('label_smoothing'), 'Label smoothing epsilon of the class loss.'
)
flags.DEFINE_float(
    'focal_loss_gamma',
    D('focal_loss_gamma'),
    'If set, softmax focal loss with this gamma instead of hard-negative mining: every negative '
    'anchor counts, weighted as --focal_loss_alpha says (so 0 is a weighted cross-entropy).',
)
flags.DEFINE_float(
    'focal_loss_alpha',
    D('focal_loss_alpha'),
    'Focal loss (--focal_loss_gamma): the weight of the positive anchors\' terms; the '
    'background\'s is 1 - alpha (default RetinaNet\'s 0.25: positives x0.25, background x0.75).',
)
flags.DEFINE_boolean(
    'ignore_crowd',
    D('ignore_crowd'),
    'COCO crowd regions (iscrowd) are neither positives nor '
    'negatives: anchors matched to one, or whose best overlap is with one, are ignored by the '
    'loss. --noignore_crowd trains them as ordinary objects (the behaviour before this flag).',
)
# Optimisation.
flags.DEFINE_float('weight_decay', D('weight_decay'), 'L2 weight decay of the convolutions.')
flags.DEFINE_enum('optimizer', D('optimizer'), optimization.OPTIMIZERS, 'The optimizer.')
flags.DEFINE_float('adadelta_rho', D('adadelta_rho'), 'Adadelta decay rate.')
flags.DEFINE_float(
    'adagrad_initial_accumulator_value',
    D('adagrad_initial_accumulator_value'),
    'Adagrad initial accumulator.',
)
flags.DEFINE_float('adam_beta1', D('adam_beta1'), 'Adam first-moment decay.')
flags.DEFINE_float('adam_beta2', D('adam_beta2'), 'Adam second-moment decay.')
flags.DEFINE_float(
    'opt_epsilon',
    D('opt_epsilon'),
    'Epsilon of adam, adadelta and rmsprop (the older port\'s 1.0 all but stopped Adam).',
)
flags.DEFINE_float(
    'ftrl_learning_rate_power', D('ftrl_learning_rate_power'), 'FTRL learning rate power.'
)
flags.DEFINE_float(
    'ftrl_initial_accumulator_value',
    D('ftrl_initial_accumulator_value'),
    'FTRL initial accumulator.',
)
flags.DEFINE_float('ftrl_l1', D('ftrl_l1'), 'FTRL L1 regularisation.')
flags.DEFINE_float('ftrl_l2', D('ftrl_l2'), 'FTRL L2 regularisation.')
flags.DEFINE_float('momentum', D('momentum'), 'Momentum of the momentum optimizer.')
flags.DEFINE_float('rmsprop_momentum', D('rmsprop_momentum'), 'RMSProp momentum.')
flags.DEFINE_float('rmsprop_decay', D('rmsprop_decay'), 'RMSProp decay.')
flags.DEFINE_float('learning_rate', D('learning_rate'), 'Initial learning rate.')
flags.DEFINE_enum(
    'learning_rate_decay_type',
    D('learning_rate_decay_type'),
    optimization.DECAY_TYPES,
    'Learning rate schedule.',
)
flags.DEFINE_float(
    'learning_rate_decay_factor',
    D('learning_rate_decay_factor'),
    'Exponential decay factor; piecewise factor when --values is not given.',
)
flags.DEFINE_float(
    'num_epochs_per_decay', D('num_epochs_per_decay'), 'Epochs per exponential / polynomial decay.'
)
flags.DEFINE_float(
    'end_learning_rate', D('end_learning_rate'), 'Final rate of polynomial and cosine decay.'
)
flags.DEFINE_list(
    'boundaries',
    D('boundaries'),
    'Piecewise decay steps, e.g. 80000,100000 with --values=0.001,0.0001,0.00001 (Caffe SSD300).',
)
flags.DEFINE_list(
    'values',
    D('values'),
    'Piecewise rates (one more than --boundaries); default: '
    'learning_rate * learning_rate_decay_factor^i.',
)
flags.DEFINE_integer(
    'warmup_steps',
    D('warmup_steps'),
    'Linear warmup steps (any decay type).',
    lower_bound=0,
    upper_bound=INT64_MAX,
)
flags.DEFINE_float(
    'moving_average_decay',
    D('moving_average_decay'),
    'If set, keep an exponential moving average of the model variables with this decay.',
)
flags.DEFINE_boolean(
    'mixed_precision',
    D('mixed_precision'),
    'Compute in bfloat16 on CPU, float16 with '
    'dynamic loss scaling on GPU; variables and the loss stay float32.',
)
# Data.
flags.DEFINE_string('dataset_name', D('dataset_name'), 'Registered dataset name.')
flags.DEFINE_string('dataset_split_name', D('dataset_split_name'), 'Split to train on.')
flags.DEFINE_string('dataset_dir', D('dataset_dir'), 'Folder of the converted TFRecords.')
flags.DEFINE_integer(
    'num_classes',
    D('num_classes'),
    'Classes including background (default: from the dataset; 21 for VOC).',
    lower_bound=2,
    upper_bound=ssd_params_lib.MAX_CLASSES,
)
flags.DEFINE_string(
    'model_name',
    D('model_name'),
    'Network: %s (default: the model card\'s when '
    'resuming, else the fine-tuned checkpoint\'s, else %s).'
    % (', '.join(sorted(nets_factory.networks_map)), cli.DEFAULT_MODEL),
)
flags.DEFINE_string(
    'model_card',
    D('model_card'),
    'A model card (model.json) describing the net to train: its model_name, SSD params (input '
    'size, anchors, prior_scaling, ...), normalisation and detection settings; the classes come '
    'from the dataset. For ablations: edit a copy of a run\'s model.json.',
)
flags.DEFINE_string(
    'preprocessing_name', D('preprocessing_name'), 'Preprocessing (default: the model\'s).'
)
flags.DEFINE_integer('batch_size', D('batch_size'), 'Images per clone per step.', lower_bound=1)
flags.DEFINE_integer(
    'max_number_of_steps',
    D('max_number_of_steps'),
    'Stop at this global step (default or 0: never).',
    lower_bound=0,
    upper_bound=INT64_MAX,
)
flags.DEFINE_enum(
    'data_format',
    D('data_format'),
    ['NHWC', 'NCHW'],
    'Image layout (NCHW: a GPU, or a CPU with oneDNN on).',
)
flags.DEFINE_string(
    'anchor_sizes',
    D('anchor_sizes'),
    'Anchor size preset of the model (%s).' % cli.anchor_presets_help(),
)
flags.DEFINE_float(
    'depth_multiplier', D('depth_multiplier'), 'Width multiplier of ssd_300_mobilenet.'
)
flags.DEFINE_float(
    'batch_norm_decay',
    D('batch_norm_decay'),
    'Moving-average decay of the batch-norm statistics '
    '(default: the model\'s, 0.997); lower it for runs of a few hundred steps.',
)
# Fine-tuning.
flags.DEFINE_string(
    'checkpoint_path',
    D('checkpoint_path'),
    'Checkpoint to initialise from: prefix, .index or '
    '.data-* file, or directory (latest). Ignored when train_dir has one.',
)
flags.DEFINE_string(
    'checkpoint_model_scope',
    D('checkpoint_model_scope'),
    'The checkpoint\'s name for the model '
    'scope (leading-scope rewrite); vgg_16 or MobilenetV1 load TF-Slim ImageNet '
    'backbones (VGG fc6/fc7 sub-sampled into conv6/conv7).',
)
flags.DEFINE_string(
    'checkpoint_exclude_scopes',
    D('checkpoint_exclude_scopes'),
    'Comma-separated scopes not restored.',
)
flags.DEFINE_string(
    'trainable_scopes', D('trainable_scopes'), 'Comma-separated scopes trained (default: all).'
)
flags.DEFINE_boolean(
    'ignore_missing_vars', D('ignore_missing_vars'), 'Skip variables the checkpoint lacks.'
)
flags.DEFINE_boolean(
    'exclude_mismatched_vars',
    D('exclude_mismatched_vars'),
    'Skip (with a warning) variables whose '
    'shape differs from the checkpoint\'s, e.g. heads after a num_classes change.',
)


# Bounds of the float flags (cli.register_bound: finite, which absl's bounds do not check): a
# value out of range trained to the end (rc 0) or failed late without naming the flag.
_bound = cli.register_bound
_bound('learning_rate', lambda v: v > 0, 'be a finite number > 0 (e.g. 0.001)')
_bound('end_learning_rate', lambda v: v >= 0, 'be a finite number >= 0 (e.g. 0.0001)')
_bound('num_epochs_per_decay', lambda v: v > 0, 'be a finite number > 0 (e.g. 2)')
_bound('loss_alpha', lambda v: v >= 0, 'be a finite number >= 0 (e.g. 1)')
_bound('negative_ratio', lambda v: v > 0, 'be a finite number > 0 (e.g. 3)')
_bound('match_threshold', lambda v: 0 < v <= 1, 'lie in (0, 1] (an IoU, e.g. 0.5)')
_bound('label_smoothing', lambda v: 0 <= v < 1, 'lie in [0, 1) (e.g. 0.1; 0: none)')
_bound('focal_loss_gamma', lambda v: v >= 0, 'be a finite number >= 0 (e.g. 2)', optional=True)
# 0 or 1 weighs the positives or the background by 0: the loss then ignores them.
_bound('focal_loss_alpha', lambda v: 0 < v < 1, 'lie in (0, 1) (default 0.25)')
# Decay rates of the optimizers' running averages: 1 (or more) never updates them, or divides by
# zero (Adam's bias correction 1 - beta1^t); 0 is plain (momentum 0: SGD).
for _name in (
    'adam_beta1',
    'adam_beta2',
    'momentum',
    'rmsprop_momentum',
    'rmsprop_decay',
    'adadelta_rho',
):
    _bound(_name, lambda v: 0 <= v < 1, 'lie in [0, 1) (default %g)' % D(_name))
# A negative decay was TF's late error, nan a non-finite loss blamed on the learning rate.
_bound(
    'weight_decay',
    lambda v: v >= 0,
    'be a finite number >= 0 (default %g; 0: none)' % D('weight_decay'),
)
# Adam divides by sqrt(<running mean of squares>) + epsilon, Adadelta and RMSProp by
# sqrt(<running mean of squares> + epsilon): 0 divides 0 by 0 where a gradient is 0 (RMSProp's
# mean starts at 1, later), a negative value takes the root of a negative number; both stopped
# at a non-finite loss.
_bound('opt_epsilon', lambda v: v > 0, 'be a finite number > 0 (default %g)' % D('opt_epsilon'))
# tf.compat.v1.train's own checks (AdagradOptimizer: accumulator > 0; FtrlOptimizer: power <= 0,
# accumulator, l1 and l2 >= 0) made at parse time, naming the flag (TF's named its argument, late),
# and finite: nan passed them and stopped at non-finite weights.
_bound(
    'adagrad_initial_accumulator_value',
    lambda v: v > 0,
    'be a finite number > 0, as Adagrad requires (default %g)'
    % D('adagrad_initial_accumulator_value'),
)
_bound(
    'ftrl_learning_rate_power',
    lambda v: v <= 0,
    'be a finite number <= 0, as FTRL requires (default %g)' % D('ftrl_learning_rate_power'),
)
for _name in ('ftrl_initial_accumulator_value', 'ftrl_l1', 'ftrl_l2'):
    _bound(
        _name, lambda v: v >= 0, 'be a finite number >= 0, as FTRL requires (default %g)' % D(_name)
    )
# Exponential decay multiplies the rate by the factor per --num_epochs_per_decay (TF takes any
# number), piecewise decay per boundary: 0 trained at rate 0 after the first decay, a negative
# factor alternated the rate's sign (gradient ascent), a factor above 1 made the rate grow
# without end (10: x100 in 2 decays), all with rc 0. A rising piecewise schedule is --values'.
_bound(
    'learning_rate_decay_factor',
    lambda v: 0 < v <= 1,
    'lie in (0, 1] (e.g. 0.94; a rate that rises at the boundaries: --values)',
)
cli.register_gpu_memory_fraction_validator(optional=False)  # the trainer always sets it
# The model card's bound (nets/ssd_params.py check_params), at parse time and naming the flag.
_bound('batch_norm_decay', lambda v: 0 <= v <= 1, 'lie in [0, 1] (e.g. 0.997)', optional=True)
# As eval, export and detect bound theirs.
cli.register_moving_average_validator()
cli.register_depth_multiplier_validator()


@flags.multi_flags_validator(
    ['learning_rate_decay_type', 'boundaries', 'values'],
    message='--boundaries / --values are not a piecewise schedule.',
)
def _check_piecewise(values):
    """--boundaries: strictly increasing steps > 0; --values: rates >= 0, one more than the
    boundaries (training/optimization.py piecewise_values); piecewise decay needs boundaries."""
    boundaries, rates = values['boundaries'] or [], values['values'] or []
    steps = []
    for text in boundaries:
        try:
            step = int(text)
        except ValueError:
            step = 0
        if not 0 < step <= INT64_MAX or (steps and step <= steps[-1]):
            raise flags.ValidationError(
                '--boundaries must be strictly increasing integer steps in [1, %d] '
                '(e.g. 80000,100000); got %s.' % (INT64_MAX, ','.join(boundaries))
            )
        steps.append(step)
    for text in rates:
        try:
            rate = float(text)
        except ValueError:
            rate = -1.0
        if not (math.isfinite(rate) and rate >= 0):
            raise flags.ValidationError(
                '--values must be finite learning rates >= 0 (e.g. 0.001,0.0001,0.00001); '
                'got %s.' % ','.join(rates)
            )
    if values['learning_rate_decay_type'] != 'piecewise' and (steps or rates):
        given = ' and '.join(f'--{n}' for n in ('boundaries', 'values') if values[n])
        raise flags.ValidationError(
            f'{given} shape a piecewise schedule; this run\'s is '
            f'--learning_rate_decay_type={values["learning_rate_decay_type"]}: add '
            '--learning_rate_decay_type=piecewise, or leave them out.'
        )
    if values['learning_rate_decay_type'] == 'piecewise':
        if not steps:
            raise flags.ValidationError(
                '--learning_rate_decay_type=piecewise needs --boundaries (steps, e.g. '
                '80000,100000).'
            )
        if rates and len(rates) != len(steps) + 1:
            raise flags.ValidationError(
                '--values must give one more rate than --boundaries has steps: %d boundaries, '
                'so %d values (or none: --learning_rate times --learning_rate_decay_factor^i); '
                'got %d.' % (len(steps), len(steps) + 1, len(rates))
            )
    return True


def _given(name):
    """Whether --`name` is on the command line: a default is never refused."""
    return FLAGS[name].present


def _either(choices):
    """'a', 'a or b', 'a, b or c'."""
    return ' or '.join(filter(None, (', '.join(choices[:-1]), choices[-1])))


def _register_reader_check(selector, name, readers):
    """Refuses --`name` given to a run whose --`selector` (--optimizer,
    --learning_rate_decay_type) is none of `readers`, the values that read it: it did nothing,
    silently."""

    def check(values):
        if _given(name) and values[selector] not in readers:
            raise flags.ValidationError(
                f'--{name} is read only by --{selector}={_either(readers)}; this run\'s is '
                f'--{selector}={values[selector]}: leave --{name} out, or change --{selector}.'
            )
        return True

    flags.register_multi_flags_validator([selector, name], check)


for _name, _readers in optimization.OPTIMIZER_READERS.items():
    _register_reader_check('optimizer', _name, _readers)
for _name, _readers in optimization.DECAY_READERS.items():
    _register_reader_check('learning_rate_decay_type', _name, _readers)


def _register_values_check(name):
    """Refuses --`name` (--learning_rate, --learning_rate_decay_factor) given with --values, which
    give every piecewise rate: the start line and card stated a --learning_rate the run never
    used."""

    def check(values):
        if _given(name) and values['values']:
            raise flags.ValidationError(
                f'--{name} is not used with --values, which give every rate of the piecewise '
                f'schedule: leave --{name} out, or drop --values for the rates --learning_rate '
                'x --learning_rate_decay_factor^i.'
            )
        return True

    flags.register_multi_flags_validator(['values', name], check)


for _name in ('learning_rate', 'learning_rate_decay_factor'):
    _register_values_check(_name)


@flags.multi_flags_validator(['focal_loss_gamma', 'negative_ratio'])
def _check_negative_ratio(values):
    """Focal loss (any --focal_loss_gamma, 0 too) mines no hard negatives: every negative anchor
    counts, and --negative_ratio did nothing."""
    if _given('negative_ratio') and values['focal_loss_gamma'] is not None:
        raise flags.ValidationError(
            '--negative_ratio sets hard-negative mining, which focal loss (--focal_loss_gamma) '
            'does not do: leave --negative_ratio out, or drop --focal_loss_gamma.'
        )
    return True


@flags.multi_flags_validator(['focal_loss_gamma', 'focal_loss_alpha'])
def _check_focal_loss_alpha(values):
    """--focal_loss_alpha weighs the terms of focal loss only: without it, it did nothing."""
    if _given('focal_loss_alpha') and values['focal_loss_gamma'] is None:
        raise flags.ValidationError(
            '--focal_loss_alpha weighs focal loss, which --focal_loss_gamma turns on: add '
            '--focal_loss_gamma (e.g. 2), or leave --focal_loss_alpha out.'
        )
    return True


# Flags that change the net a --model_card describes: its file says it (edit the card instead).
CARD_STRUCTURE_FLAGS = ('anchor_sizes', 'depth_multiplier', 'preprocessing_name')


@flags.multi_flags_validator(['model_card', *CARD_STRUCTURE_FLAGS])
def _check_model_card(values):
    """--model_card describes the net whole: a structure flag beside it would change it."""
    given = [f'--{name}' for name in CARD_STRUCTURE_FLAGS if values[name] is not None]
    if given and values['model_card']:
        raise flags.ValidationError(
            f'{", ".join(given)} and --model_card={values["model_card"]}: the card describes the '
            'net to train; edit its ssd_params (or normalisation) instead, or leave '
            f'{"it" if len(given) == 1 else "them"} out.'
        )
    return True


FINE_TUNING_FLAGS = (
    'checkpoint_model_scope',
    'checkpoint_exclude_scopes',
    'ignore_missing_vars',
    'exclude_mismatched_vars',
)


@flags.multi_flags_validator(['checkpoint_path', *FINE_TUNING_FLAGS])
def _check_fine_tuning(values):
    """The fine-tuning flags shape what --checkpoint_path restores: without it they did nothing,
    silently."""
    given = [f'--{name}' for name in FINE_TUNING_FLAGS if values[name]]
    if given and not values['checkpoint_path']:
        raise flags.ValidationError(
            f'{", ".join(given)} shape{"s" if len(given) == 1 else ""} what --checkpoint_path '
            'restores (fine-tuning); this run gives none: add --checkpoint_path, or leave '
            f'{"it" if len(given) == 1 else "them"} out.'
        )
    return True


@flags.multi_flags_validator(['seed', 'task_index'])
def _check_worker_seed(values):
    """Worker `task_index` reads with seed + 1000003 * task_index (training/trainer.py), an
    int64."""
    seed, task = values['seed'], values['task_index'] or 0
    if seed is not None and not INT64_MIN <= seed + 1000003 * task <= INT64_MAX:
        raise flags.ValidationError(
            '--seed=%d of worker --task_index=%d gives input seed --seed + 1000003 * '
            '--task_index out of the int64 range [%d, %d]; pass a smaller --seed.'
            % (seed, task, INT64_MIN, INT64_MAX)
        )
    return True


def main(_):
    logs.absl_only(logging.INFO)
    try:
        # A typo, before the dataset, --train_dir or a checkpoint is read.
        cli.check_model_name(FLAGS.model_name)
        cli.check_anchor_sizes(FLAGS.model_name, FLAGS.anchor_sizes)
    except ValueError as e:
        logs.exit_error(e)
    settings = trainer.TrainSettings.from_flags(FLAGS)
    try:
        trainer.train(settings)
    except hooks.NonFiniteError as e:
        last_good = checkpoints.latest_in_directory(FLAGS.train_dir)
        logs.exit_error(
            '%s; training stopped without saving. Last good '
            'checkpoint: %s. Lower the learning rate or check the data.'
            % (e, last_good or 'none was written')
        )
    except tf_errors.RecordsError as e:
        logs.exit_error(f'{e}; {_failed(tf_errors.FIX_RECORDS)}')
    except hooks.CheckpointWriteError as e:
        logs.exit_error(f'{e}; {_failed(WRITE_FIX)}')
    except (
        ValueError,
        OSError,
        trainer.ClusterError,
        checkpoints.CheckpointUnavailable,
    ) as e:
        logs.exit_error(e)


def _role():
    """This process' job in a cluster: 'ps', 'worker' (not the chief), or None (the chief, or
    alone, or settings that do not make a cluster)."""
    try:
        cluster = trainer.cluster_lib.cluster_from(
            FLAGS.ps_hosts,
            FLAGS.worker_hosts,
            FLAGS.job_name,
            FLAGS.task_index,
            os.environ,
            log=lambda *args: None,
        )
    except Exception:  # pylint: disable=broad-except  # the line must not become a traceback
        return None
    return None if cluster.is_chief else cluster.job_name


# What a user does about a checkpoint that could not be written; `_failed` ends the sentence.
WRITE_FIX = 'make room on its disk (or make the folder writable again), then'


def _failed(fix):
    """What is kept when training failed for a reason that stays until someone acts (bad
    records, a full disk), and what to do: `fix`, a clause ending in 'then'."""
    if _role() == 'worker':
        return f'the chief keeps the checkpoints: {fix} restart this worker with the same command.'
    latest = checkpoints.latest_in_directory(FLAGS.train_dir)
    if latest:
        step = checkpoints.checkpoint_step_from_name(latest)
        at = '' if step is None else f' (step {step})'
        return f'the last checkpoint {latest}{at} is kept: {fix} run the same command to resume.'
    return f'no checkpoint was written: {fix} run the same command to start again.'


def _interrupted():
    role = _role()
    if role == 'ps':
        return (
            'this parameter server keeps nothing on disk (the chief keeps the checkpoints); '
            'restart it with the same command'
        )
    if role == 'worker':
        return (
            'the chief keeps the checkpoints; restart this worker with the same command to '
            'rejoin the training'
        )
    latest = checkpoints.latest_in_directory(FLAGS.train_dir) if FLAGS.train_dir else None
    if latest:
        return (
            f'checkpoints up to {os.path.basename(latest)} are kept in {FLAGS.train_dir}; '
            f'run the same command to resume from it'
        )
    return (
        f'no checkpoint was written yet in {FLAGS.train_dir}; run the same command to start again'
    )


if __name__ == '__main__':
    logs.run(main, _interrupted)
