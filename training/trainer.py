"""The SSD trainer: settings in, checkpoints and a model card out (TF-Slim conventions, graph mode).

    settings = TrainSettings(train_dir='logs/ssd300', dataset_name='pascalvoc_0712',
                             dataset_split_name='trainval', dataset_dir='tfrecords',
                             model_name='ssd_300_vgg', max_number_of_steps=120000)
    train(settings)

`train_ssd_network.py` fills `TrainSettings` from its flags (same names, same defaults);
benchmarks and tests call the same functions. The steps of a run: `cluster_setup` (alone, or a
ps / worker of a cluster), `resolve_model_card` (the train dir's card when resuming, else one
made from the settings and the dataset, carrying class names and anchors over from a fine-tuned
checkpoint's card), `build_input`, `build_train_op` (clones, loss, learning rate, optimizer),
`make_hooks`, then the session loop. A checkpoint already in `train_dir` means resume.
In a cluster, `training/cluster.py` synchronises the workers and starts and ends the processes.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import threading
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from model import card as card_lib
from model import checkpoints
from model import cli
from nets import nets_factory
from nets import ssd_common
from nets import ssd_params
from preprocessing import preprocessing_factory
from training import cluster as cluster_lib
from training import hooks as hooks_lib
from training import input as train_input
from training import model_deploy
from training import optimization
from tf_extended import folder_lock
from tf_extended import logs
from tf_extended import signals
from tf_extended import texts
from tf_extended import tf_errors

v1 = tf.compat.v1

NON_FINITE_TAG = 'Non-finite total loss'
# Flags that describe the net, checked against the train dir's card when resuming.
STRUCTURE_FIELDS = ('model_name', 'num_classes', 'depth_multiplier', 'anchor_sizes')
# The nets with batch norm, which --batch_norm_decay sets (the VGG nets have none).
BATCH_NORM_NETS = ('ssd_300_mobilenet',)
# The share of their initial values (means 0, variances 1) that batch-norm moving statistics may
# keep at a run's end. Measured: a 500-step MobileNet-SSD run at decay 0.997 kept 22 % and its
# scores differed by 6e-6 between a photo, a black and a white image (0.9: AP 44.5 %).
BATCH_NORM_START_LEFT = 0.05


UsageError = cluster_lib.UsageError  # settings that cannot work together (message says which)
ClusterError = cluster_lib.ClusterError
Cluster = cluster_lib.Cluster


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run: the flags of train_ssd_network.py (see its --helpfull)."""

    # General.
    train_dir: str = '/tmp/tfmodel/'
    num_clones: int = 1
    clone_on_cpu: bool = False
    num_readers: int = 4
    num_preprocessing_threads: int = 4
    log_every_n_steps: int = 10
    save_summaries_secs: int = 60
    save_interval_secs: int = 600
    save_interval_steps: Optional[int] = None
    max_to_keep: int = 5
    gpu_memory_fraction: float = 0.8
    seed: Optional[int] = None
    histograms: bool = False
    # Distributed (between-graph replication).
    ps_hosts: str = ''
    worker_hosts: str = ''
    job_name: Optional[str] = None
    task_index: int = 0
    sync_replicas: bool = False
    replicas_to_aggregate: Optional[int] = None
    cluster_wait_secs: int = 600
    # Loss.
    loss_alpha: float = 1.0
    negative_ratio: float = 3.0
    match_threshold: float = 0.5
    label_smoothing: float = 0.0
    focal_loss_gamma: Optional[float] = None
    focal_loss_alpha: float = 0.25
    ignore_crowd: bool = True
    # Optimisation.
    weight_decay: float = 0.0005
    optimizer: str = 'adam'
    adadelta_rho: float = 0.95
    adagrad_initial_accumulator_value: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    opt_epsilon: float = 1e-8
    ftrl_learning_rate_power: float = -0.5
    ftrl_initial_accumulator_value: float = 0.1
    ftrl_l1: float = 0.0
    ftrl_l2: float = 0.0
    momentum: float = 0.9
    rmsprop_momentum: float = 0.9
    rmsprop_decay: float = 0.9
    learning_rate: float = 0.001
    learning_rate_decay_type: str = 'exponential'
    learning_rate_decay_factor: float = 0.94
    num_epochs_per_decay: float = 2.0
    end_learning_rate: float = 0.0001
    boundaries: Tuple[str, ...] = ()
    values: Tuple[str, ...] = ()
    warmup_steps: int = 0
    moving_average_decay: Optional[float] = None
    mixed_precision: bool = False
    # Data and model.
    dataset_name: str = 'pascalvoc_2007'
    dataset_split_name: str = 'train'
    dataset_dir: Optional[str] = None
    num_classes: Optional[int] = None
    model_name: Optional[str] = None
    model_card: Optional[str] = None
    preprocessing_name: Optional[str] = None
    batch_size: int = 32
    max_number_of_steps: Optional[int] = None
    data_format: str = 'NHWC'
    anchor_sizes: Optional[str] = None
    depth_multiplier: Optional[float] = None
    batch_norm_decay: Optional[float] = None
    # Fine-tuning.
    checkpoint_path: Optional[str] = None
    checkpoint_model_scope: Optional[str] = None
    checkpoint_exclude_scopes: Optional[str] = None
    trainable_scopes: Optional[str] = None
    ignore_missing_vars: bool = False
    exclude_mismatched_vars: bool = False

    @classmethod
    def from_flags(cls, flag_values):
        """The settings of absl flags of the same names (lists become tuples)."""

        def value(name):
            v = flag_values[name].value
            return tuple(v) if isinstance(v, list) else v

        return cls(**{f.name: value(f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def default(cls, name):
        return cls.__dataclass_fields__[name].default

    @property
    def images_per_step(self):
        return self.batch_size * self.num_clones


def cluster_setup(settings, environ=os.environ):
    """The `Cluster` of the host flags, else of TF_CONFIG, else a lone process (both sources
    checked alike, see `cluster_lib.cluster_from`)."""
    return cluster_lib.cluster_from(
        settings.ps_hosts, settings.worker_hosts, settings.job_name, settings.task_index, environ
    )


def session_config(settings, cluster=Cluster()):
    config = v1.ConfigProto(allow_soft_placement=True)
    config.gpu_options.per_process_gpu_memory_fraction = settings.gpu_memory_fraction
    return cluster_lib.add_device_filters(config, cluster)


def _model_flags(settings, override=False):
    return cli.ModelFlags(
        override_model_card=override,
        model_name=settings.model_name,
        num_classes=settings.num_classes,
        depth_multiplier=settings.depth_multiplier,
        anchor_sizes=settings.anchor_sizes,
    )


def _fine_tune_card(settings, log):
    """The card of --checkpoint_path (a detection model's), or None."""
    path = card_lib.find_for_checkpoint(settings.checkpoint_path)
    if not path:
        return None
    try:
        return card_lib.load(path)
    except card_lib.CardError as err:
        log('the fine-tuning checkpoint\'s card is not used: %s' % err)
        return None


def _detection_text(detection):
    return ', '.join(f'{k} {getattr(detection, k):g}' for k in cli.DETECTION_FIELDS)


def _card_to_train(settings):
    """The card --model_card names (the net to train: model_name, SSD params, normalisation,
    detection settings), checked against --model_name.

    Raises:
      card_lib.CardError: the file is no card (the message names it); UsageError: --model_name
        names another net.
    """
    card = card_lib.load(settings.model_card)
    if settings.model_name and settings.model_name != card.model_name:
        raise UsageError(
            f'--model_name={settings.model_name} and --model_card={settings.model_card} '
            f'({card.model_name}) name two nets: leave --model_name out, or give a card of '
            f'{settings.model_name}.'
        )
    return card


def _check_same_net(card, path, given, given_path, fix):
    """Raises CardError when the card `given` (--model_card) describes another net than the
    training's `card` (its model.json, `path`): other SSD params (the classes and the run's
    batch-norm decay aside), normalisation or detection settings."""
    same = given.params._replace(
        num_classes=card.params.num_classes, batch_norm_decay=card.params.batch_norm_decay
    )
    differ = [f for f in same._fields if getattr(same, f) != getattr(card.params, f)]
    if given.model_name != card.model_name:
        differ.insert(0, 'model_name')
    if (given.mean_rgb, given.scale) != (card.mean_rgb, card.scale):
        differ.append('normalisation')
    if given.detection != card.detection:
        differ.append('detection')
    if differ:
        raise card_lib.CardError(
            f'--model_card={given_path} describes another net than the training in {path} '
            f'(its {", ".join(differ)} differ): {fix}, or leave --model_card out to resume.'
        )


def _checked_training_card(settings, path, log, fix):
    """The training's card (its model.json, `path`) with the model flags applied; CardError
    (naming `fix`, the way out) for a model flag or a --model_card that contradicts it."""
    card = card_lib.load(path)
    card = cli.apply_structure_flags(card, _model_flags(settings), path, log, fix=fix)
    if settings.model_card:
        _check_same_net(card, path, _card_to_train(settings), settings.model_card, fix)
    return card


def _log_class_fit(settings, dataset, source, names, log):
    """Logs how the class heads of the fine-tuned model's card `source` fit the dataset's
    classes `names`: restored by name (`class_heads_by_name`), other names (restored for other
    classes unless excluded), another count."""
    indices = card_lib.class_indices(source, names)
    if indices and not settings.checkpoint_exclude_scopes:
        picked = texts.listed([f'{n!r} (its label {i})' for n, i in zip(names, indices[1:])], 5)
        which = (
            f'among its {source.num_classes - 1}'
            if source.num_classes != len(names) + 1
            else 'in another order'
        )
        log(
            'the fine-tuned model (%s) has the classes of dataset %s/%s (%s): its class heads '
            'are restored for them by name: %s'
            % (settings.checkpoint_path, dataset.name, dataset.split_name, which, picked)
        )
        return
    mismatch = card_lib.class_names_mismatch(source, names)
    # The hints say what to pass; said to users who passed it, they read as unheeded.
    excluding = settings.checkpoint_exclude_scopes or settings.exclude_mismatched_vars
    if mismatch and not excluding:
        log(
            'the fine-tuned model (%s) and dataset %s/%s %s: its class heads are restored '
            'for other classes; exclude them (--checkpoint_exclude_scopes) to learn them '
            'anew, or %s'
            % (
                settings.checkpoint_path,
                dataset.name,
                dataset.split_name,
                mismatch,
                dataset_factory.relabel_advice(dataset.metadata),
            )
        )
    if source.num_classes != dataset.num_classes:
        # Said either way (the README: "a class-count change is logged").
        if settings.exclude_mismatched_vars:
            heads = 'they start anew (--exclude_mismatched_vars)'
        elif excluding:
            heads = (
                'those --checkpoint_exclude_scopes covers start anew, any other is refused '
                'for its shape'
            )
        else:
            heads = (
                'restore without them (--checkpoint_exclude_scopes or --exclude_mismatched_vars)'
            )
        log(
            'fine-tuning a %d-class model (%s) on %d classes: its class heads do not fit; %s'
            % (source.num_classes - 1, settings.checkpoint_path, dataset.num_classes - 1, heads)
        )


def _card_from_flags(settings, dataset, source, names, ids, log):
    """The card of a new run without --model_card: the fine-tuned model's card `source` (or None)
    when it is the net trained, with the dataset's classes (`names`, `ids`; the source's names
    and ids for unnamed classes) and the structure flags, logging what does not fit; else the
    registry's net."""
    model_name = settings.model_name or (source.model_name if source else cli.DEFAULT_MODEL)
    cli.check_anchor_sizes(model_name, settings.anchor_sizes)  # a preset of another net
    if source is not None and source.model_name == model_name:
        if source.num_classes == dataset.num_classes and names == card_lib.default_class_names(
            dataset.num_classes
        ):
            names, ids = source.class_names, source.category_ids
        card = source.replace(
            params=source.params._replace(num_classes=dataset.num_classes),
            class_names=names,
            category_ids=ids,
            detection=source.detection,
        )
        defaults = card_lib.DetectionSettings()  # a new card's, whatever the net
        if source.detection != defaults:
            # A converted Caffe deploy's display threshold (0.25) read as a 0.00 mAP later.
            log(
                'the detection settings of the fine-tuned model\'s card (%s) carry over: %s '
                '(the net\'s defaults: %s); eval, export and detect apply them unless their '
                '--select_threshold, --nms_threshold, --top_k or --keep_top_k say otherwise'
                % (
                    settings.checkpoint_path,
                    _detection_text(source.detection),
                    _detection_text(defaults),
                )
            )
        _log_class_fit(settings, dataset, source, names, log)
        if settings.anchor_sizes:
            if source.anchor_size_preset != settings.anchor_sizes:
                # Said as the other changes are: the switch was silent.
                log(
                    'fine-tuning a model (%s) with --anchor_sizes=%s: the anchors change from '
                    '%s to %s; its box heads were trained for the old ones'
                    % (
                        settings.checkpoint_path,
                        settings.anchor_sizes,
                        source.anchor_size_preset or 'custom',
                        settings.anchor_sizes,
                    )
                )
            card = card.with_params(
                **ssd_params.anchor_preset_params(model_name, settings.anchor_sizes)
            )
        if settings.depth_multiplier is not None:
            if float(settings.depth_multiplier) != source.params.depth_multiplier:
                log(
                    'fine-tuning a model of depth_multiplier %g (%s) with --depth_multiplier=%g: '
                    'its backbone and extra layers have other widths and do not fit'
                    % (
                        source.params.depth_multiplier,
                        settings.checkpoint_path,
                        settings.depth_multiplier,
                    )
                )
            card = card.with_params(depth_multiplier=float(settings.depth_multiplier))
    else:
        card = card_lib.from_registry(
            model_name, dataset.num_classes, names, settings.anchor_sizes, settings.depth_multiplier
        ).replace(category_ids=ids)
    return card


def _new_card(settings, dataset, log):
    """The card of a new run: the settings and the dataset, on top of the --model_card's (its
    net, anchors, normalisation and detection settings; the dataset's classes) or else of the
    fine-tuned model's card when it is the same net (its anchors and, for unnamed classes, its
    class names and category ids). The category ids: the records' COCO ids
    (`dataset_factory.category_ids`)."""
    names = dataset.class_names
    ids = dataset_factory.category_ids(dataset.metadata)
    source = _fine_tune_card(settings, log) if settings.checkpoint_path else None
    if settings.model_card:
        if source is not None:
            _log_class_fit(settings, dataset, source, names, log)
        card = _card_to_train(settings)
        card = card.replace(
            params=card.params._replace(num_classes=dataset.num_classes),
            class_names=names,
            category_ids=ids,
        )
    else:
        card = _card_from_flags(settings, dataset, source, names, ids, log)
    if settings.preprocessing_name:
        pipeline = preprocessing_factory.get_preprocessing(settings.preprocessing_name)
        card = card.replace(mean_rgb=tuple(pipeline.mean_rgb), scale=float(pipeline.scale))
    given = card if settings.model_card else None
    return card.replace(
        card_id=card_lib.new_card_id(), provenance=_provenance(settings, dataset, source, given)
    )


def _provenance(settings, dataset, source, given):
    """A new run's record of where its model comes from: this run's settings and data, the
    fine-tuned checkpoint with its card `source` (or None), the --model_card's card `given` (or
    None)."""
    provenance = {
        'trained_by': 'train_ssd_network.py',
        'time': card_lib.now(),
        'git_commit': card_lib.git_commit(),
        'dataset': _dataset_record(dataset),
        'fine_tuned_from': (
            {
                # The checkpoint itself, not the folder or relative path the flag named.
                'checkpoint': os.path.abspath(
                    checkpoints.resolve_checkpoint(settings.checkpoint_path)
                ),
                'card_id': source.card_id if source else None,
            }
            if settings.checkpoint_path
            else None
        ),
        'settings': recorded_settings(settings),
    }
    if given is not None:  # the file may change later: its card id says which card it was
        provenance['model_card'] = {
            'path': os.path.abspath(settings.model_card),
            'card_id': given.card_id or None,  # None: a card never trained (from_registry's)
        }
    return provenance


def restarted_card(card, settings, dataset, log=logging.warning):
    """The card of a new run in a --train_dir whose card (`card`, checked against the flags by
    `resolve_model_card`) no checkpoint was written with: a run stopped before its first. Its
    model and card id (a watcher may have read them) with this run's provenance: the stopped
    run's settings and data stood as the training's, so that the corrected command's resumes
    logged changes from settings never trained with (and evaluation's training split was the
    stopped run's)."""
    source = _fine_tune_card(settings, log) if settings.checkpoint_path else None
    given = _card_to_train(settings) if settings.model_card else None
    return card.replace(provenance=_provenance(settings, dataset, source, given))


def recorded_settings(settings):
    """The settings as the card's provenance records them: all of them, with learning_rate None
    where the schedule does not read it (piecewise --values give every rate): the card of a run at
    --values' rates recorded a --learning_rate it never used."""
    record = dataclasses.asdict(settings)
    if not optimization.reads_learning_rate(settings.learning_rate_decay_type, settings.values):
        record['learning_rate'] = None
    return record


def resolve_model_card(settings, dataset, resume_from=None, log=logging.warning):
    """(card, path of an existing card or None) of this run.

    `log`: callable(str) for the cautions (a card not used, classes or widths that do not fit the
    fine-tuned checkpoint, --override_model_card's changes). Resuming (a card in train_dir): that
    card; a model setting that contradicts it is a
    CardError naming the setting, both values, the file and the way out (a new --train_dir; for
    the card of a run stopped before its first checkpoint, no `resume_from`: deleting it, as it
    describes no weights; it is not replaced silently, since a watcher or the cluster's other
    workers may have read it already); the dataset must have its classes. Otherwise a new card
    (`_new_card`), written by the chief before the first checkpoint.
    """
    path = os.path.join(settings.train_dir, card_lib.CARD_FILE)
    if not os.path.isfile(path):
        return _new_card(settings, dataset, log), None
    fix = (
        'train in a new --train_dir'
        if resume_from
        else f'delete {path} (no checkpoint was written with it: a run stopped before one)'
    )
    card = _checked_training_card(settings, path, log, fix)
    if card.num_classes != dataset.num_classes:
        raise card_lib.CardError(
            'the model in %s (card %s) has %d classes with background; dataset %s/%s has %d. '
            'Train in a new --train_dir to change the classes.'
            % (
                settings.train_dir,
                path,
                card.num_classes,
                dataset.name,
                dataset.split_name,
                dataset.num_classes,
            )
        )
    mismatch = dataset.metadata and card_lib.class_names_mismatch(card, dataset.class_names)
    if mismatch:
        raise card_lib.CardError(
            'the model in %s (card %s) and dataset %s/%s %s. Train in a new --train_dir for '
            'these classes, or %s.'
            % (
                settings.train_dir,
                path,
                dataset.name,
                dataset.split_name,
                mismatch,
                dataset_factory.relabel_advice(dataset.metadata),
            )
        )
    return card, path


# Settings that do not change what is learned (where and how often it is saved and logged, how
# the input is read, the cluster's addresses), the model's shape (the card decides it) and
# fine-tuning (ignored on resume): a resume with others is recorded (`_resume_record`).
_NOT_RECORDED_ON_RESUME = frozenset(
    (
        'train_dir num_readers num_preprocessing_threads log_every_n_steps save_summaries_secs '
        'save_interval_secs save_interval_steps max_to_keep gpu_memory_fraction histograms '
        'ps_hosts worker_hosts job_name task_index cluster_wait_secs clone_on_cpu data_format '
        'dataset_dir model_name model_card num_classes anchor_sizes depth_multiplier '
        'checkpoint_path checkpoint_model_scope checkpoint_exclude_scopes ignore_missing_vars '
        'exclude_mismatched_vars'
    ).split()
)


def _dataset_record(dataset):
    return {
        'name': dataset.name,
        'split': dataset.split_name,
        'dir': os.path.abspath(dataset.dataset_dir),
        'num_examples': dataset.num_samples,
    }


def _remove_unlisted(train_dir, prefixes):
    if prefixes:
        checkpoints.remove_checkpoints(train_dir, prefixes)
        logging.info(
            'Removed %d checkpoint(s) older than the --max_to_keep newest: %s.',
            len(prefixes),
            ', '.join(os.path.basename(p) for p in prefixes),
        )


def _resume_record(card, settings, dataset, step, path=card_lib.CARD_FILE):
    """(the card with this resume recorded, [(logging level, line)]) when the resume's settings or
    data differ from the training's so far (its card's provenance: the first run's settings,
    updated by the resumes recorded since); (card, []) otherwise or for a card without a record;
    (card, [a warning naming `path` and the field]) for a record that cannot be read.

    The step count and the learning-rate schedule continue with the new values, and the data of
    every resume is named in the card: evaluation's warning on a split the model was trained on
    reads it (`evaluation.evaluate.trained_on`)."""
    runs, problem = _recorded_runs(card)
    if problem:
        return card, [
            (
                logging.WARNING,
                f'{path}: {problem}; the training so far cannot be read from it: this resume '
                "is not recorded in the card, and the step lines count epochs from step 0 at "
                "this run's batch size.",
            )
        ]
    if runs is None:
        return card, []
    _, recorded, data = runs[-1]
    now = json.loads(json.dumps(recorded_settings(settings)))
    # The data line names the dataset; the step limit shapes only a cosine decay (raising it is
    # how a training goes on; a polynomial one spans --num_epochs_per_decay, as TF-Slim's).
    ignored = _NOT_RECORDED_ON_RESUME | {'dataset_name', 'dataset_split_name'}
    if settings.learning_rate_decay_type != 'cosine':
        ignored = ignored | {'max_number_of_steps'}
    # A setting neither run reads is no change (a run started before such flags were refused
    # recorded --learning_rate beside piecewise --values, or --momentum with adam).
    changes = {
        name: [recorded[name], value]
        for name, value in now.items()
        if name not in ignored
        and name in recorded
        and recorded[name] != value
        and (optimization.reads_setting(name, recorded) or optimization.reads_setting(name, now))
    }
    new_data = _dataset_record(dataset)
    same_data = (data.get('name'), data.get('split')) == (new_data['name'], new_data['split']) and (
        isinstance(data.get('dir'), str)
        and os.path.realpath(data['dir']) == os.path.realpath(new_data['dir'])
    )
    if not changes and same_data:
        return card, []
    lines = []
    if changes:
        lines.append(
            (
                logging.INFO,
                'resuming with other settings than the training so far (its card records them '
                'once this run has written a checkpoint): '
                + ', '.join(f'{name} {old} -> {new}' for name, (old, new) in changes.items())
                + '; the step count and the learning-rate schedule go on from step %d with the '
                'new values' % step,
            )
        )
    if not same_data:
        lines.append(
            (
                logging.WARNING,
                'resuming on %s split %s in %s; the training so far used %s split %s in %s (the '
                'card records both once this run has written a checkpoint)'
                % (
                    new_data['name'],
                    new_data['split'],
                    new_data['dir'],
                    data.get('name'),
                    data.get('split'),
                    data.get('dir'),
                ),
            )
        )
    resume = {'time': card_lib.now(), 'step': step, 'changes': changes}
    if not same_data:
        resume['dataset'] = new_data
    resumes = [r for r in card.provenance.get('resumed') or [] if isinstance(r, dict)]
    return card.replace(provenance=dict(card.provenance, resumed=resumes + [resume])), lines


# Steps, batch sizes, clones and examples a card's record may hold: JSON holds any int (10**400
# would overflow the epochs' float).
_MAX_COUNT = 2**63 - 1


def _recorded_runs(card):
    """(`recorded_runs`, None), or (None, what is wrong) for a record that cannot be read: the
    field, its value and what it should be."""
    provenance = card.provenance if isinstance(card.provenance, dict) else {}
    recorded, data = provenance.get('settings'), provenance.get('dataset')
    if not isinstance(recorded, dict) or not isinstance(data, dict):
        return None, None
    resumes = provenance.get('resumed') or []
    if not isinstance(resumes, list):
        return None, f'provenance.resumed is {texts.shown(resumes)}, expected a list of resumes'
    runs = [(0, recorded, data)]
    for i, resume in enumerate(resumes):
        if not isinstance(resume, dict):
            continue
        field = f'provenance.resumed[{i}]'
        step, changes = resume.get('step'), resume.get('changes') or {}
        if not ssd_params.is_int(step, 0, _MAX_COUNT):
            return None, f'{field}.step is {texts.shown(step)}, expected a step (an int >= 0)'
        if not isinstance(changes, dict) or not all(
            isinstance(v, list) and len(v) == 2 for v in changes.values()
        ):
            return None, (
                f'{field}.changes is {texts.shown(changes)}, expected an object of '
                'setting: [old value, new value]'
            )
        if not isinstance(resume.get('dataset') or {}, dict):
            return None, (
                f'{field}.dataset is {texts.shown(resume["dataset"])}, expected an object '
                '(name, split, dir, num_examples)'
            )
        recorded = dict(recorded, **{k: v[1] for k, v in changes.items()})
        data = resume.get('dataset') or data
        runs.append((step, recorded, data))
    return runs, None


def recorded_runs(card):
    """[(first step, settings, dataset)] of the training runs the card's provenance records: the
    first run's from step 0, then each resume's (the settings so far with its changes, its data
    or the data so far); None for a card without a record, or with one that cannot be read
    (`_resume_record` says which field)."""
    return _recorded_runs(card)[0]


def epochs_at(card, step):
    """Epochs trained up to global `step` as the card's provenance records the runs
    (`recorded_runs`): each run's batch and data from its first step on; None without a record,
    or with one whose batch sizes, clones or example counts are not counts (ints >= 1).
    (Step x this run's batch / examples went backwards after a resume with a smaller batch.)"""
    runs = recorded_runs(card)
    if runs is None:
        return None
    epochs = 0.0
    for (start, run, run_data), (end, *_) in zip(runs, runs[1:] + [(step,)]):
        batch, clones = run.get('batch_size'), run.get('num_clones', 1)
        examples = run_data.get('num_examples')
        if not all(ssd_params.is_int(n, 1, _MAX_COUNT) for n in (batch, clones, examples)):
            return None
        epochs += max(0, min(end, step) - start) * batch * clones / examples
    return epochs


def nchw_trains_here():
    """Whether this process can train an NCHW net: the forward and backward kernels of its
    convolutions, pooling and batch norm run on a tiny graph (TF's own CPU kernels are NHWC only;
    oneDNN's and the GPU's run NCHW)."""
    with tf.Graph().as_default():
        x = tf.ones([1, 2, 4, 4])
        y = tf.nn.conv2d(x, tf.ones([3, 3, 2, 2]), 1, 'SAME', data_format='NCHW')
        y = tf.nn.depthwise_conv2d(y, tf.ones([3, 3, 2, 1]), [1, 1, 1, 1], 'SAME', 'NCHW')
        y, _, _ = v1.nn.fused_batch_norm(y, tf.ones([2]), tf.zeros([2]), data_format='NCHW')
        y = tf.nn.max_pool2d(y, 2, 2, 'SAME', data_format='NCHW')
        grad = tf.gradients(tf.reduce_sum(y), x)
        try:
            with v1.Session(config=v1.ConfigProto(allow_soft_placement=True)) as sess:
                sess.run(grad)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
            return False
    return True


def check_data_format(settings):
    """--data_format=NCHW where this process cannot train it is one line (TF would fail in the
    first step, after writing a step-0 checkpoint and the card, in a long traceback)."""
    if settings.data_format == 'NCHW' and not nchw_trains_here():
        raise UsageError(
            '--data_format=NCHW: TensorFlow cannot train NCHW convolutions here (its CPU kernels '
            'are NHWC only; NCHW needs a GPU or oneDNN, e.g. TF_ENABLE_ONEDNN_OPTS=1); use '
            '--data_format=NHWC.'
        )


def _steps(count):
    return f'{count} step{"s" if count != 1 else ""}'


def batch_norm_start_warning(card, max_number_of_steps, fresh_statistics):
    """A warning when the run ends with batch-norm moving statistics that still hold more than
    BATCH_NORM_START_LEFT of their initial values, else None. Evaluation and exported models
    normalise with them, so such a model's outputs barely depend on the image, and nothing said
    so. `fresh_statistics`: the moving-variance variables that start from their initial value
    (every one from scratch; those a fine-tuning checkpoint does not restore)."""
    decay = card.params.batch_norm_decay
    # No end (--max_number_of_steps 0 or None): nothing to say.
    if not fresh_statistics or not max_number_of_steps or decay is None or decay <= 0:
        return None
    left = decay**max_number_of_steps
    if left <= BATCH_NORM_START_LEFT:
        return None
    # The largest two-decimal decay that leaves at most the share after this run's steps.
    lower = math.floor(100 * BATCH_NORM_START_LEFT ** (1 / max_number_of_steps)) / 100
    advice = f'pass --batch_norm_decay={lower:g} or lower'
    if decay < 1:  # at 1 the statistics never move: no number of steps will do
        steps = math.ceil(math.log(BATCH_NORM_START_LEFT) / math.log(decay))
        advice = f'train {steps} steps or more, or {advice}'
    return (
        f'--batch_norm_decay={decay:g} over {_steps(max_number_of_steps)}: the moving means and '
        f'variances of {fresh_statistics} batch-norm layer(s) start from 0 and 1 and keep '
        f'{left:.0%} of those at the end; evaluation and exported models normalise with them, so '
        f"the model's outputs would barely depend on the image: {advice}."
    )


def warmup_start_warning(warmup_steps, max_number_of_steps):
    """A warning when the warm-up lasts the whole run, else None: the ramp multiplies the rate by
    (step + 1) / warmup_steps, so the run's last step (max_number_of_steps - 1) trains at no more
    than max_number_of_steps / warmup_steps of the schedule's rate. A long recipe scaled down to
    a short check (README's --warmup_steps=1000 kept, --max_number_of_steps=150) trained at 15 %
    of its rate at most, and the start line only said both numbers."""
    if not warmup_steps or not max_number_of_steps or warmup_steps < max_number_of_steps:
        return None
    return (
        f'--warmup_steps={warmup_steps} over {_steps(max_number_of_steps)}: the whole run is '
        f'warm-up, and its last step trains at {100 * max_number_of_steps / warmup_steps:.3g}% '
        f"of the schedule's learning rate at most: pass --warmup_steps lower than "
        f'--max_number_of_steps (e.g. {max_number_of_steps // 10}).'
    )


def frozen_start_warning(settings, restorer):
    """A warning when --trainable_scopes leaves out variables that `restorer` (None: nothing is
    restored) does not restore either: they keep their initial values, random for weights, to
    the end (e.g. class heads excluded from the checkpoint for new classes but not trained), and
    nothing said so. Else None."""
    found = checkpoints.frozen_at_start(
        v1.trainable_variables(), restorer.items if restorer else (), settings.trainable_scopes
    )
    if not found:
        return None
    count, scopes = found
    source = 'the checkpoint does not restore them' if restorer else 'no --checkpoint_path'
    return (
        f'--trainable_scopes leaves {count} variable(s) at their initial values to the end '
        f'({source}, and they are not trained): {scopes}; add their scopes to '
        f'--trainable_scopes.'
    )


def _fresh_statistics(restorer):
    """The graph's batch-norm moving-variance variables that `restorer` (or None) leaves at their
    initial values."""
    restored = {id(item.variable) for item in restorer.items} if restorer else set()
    return sum(
        1
        for v in v1.global_variables()
        if v.op.name.endswith('/moving_variance') and id(v) not in restored
    )


def net_card(card, settings):
    """The card of the net this run trains: its batch-norm decay is --batch_norm_decay, else the
    --model_card's (its ssd_params describe the net), else the net's default (a setting of each
    run, as resumes and fine-tuning treat it). The card written then records the decay the net
    used (it said 0.997 for a net trained at --batch_norm_decay's).

    Raises:
      UsageError: --batch_norm_decay for a net without batch norm (it did nothing).
    """
    if settings.batch_norm_decay is not None and card.model_name not in BATCH_NORM_NETS:
        raise UsageError(
            f'--batch_norm_decay sets the batch norm of {", ".join(BATCH_NORM_NETS)} only; '
            f'{card.model_name} has none: leave --batch_norm_decay out.'
        )
    decay = settings.batch_norm_decay
    if decay is None and settings.model_card:
        decay = _card_to_train(settings).params.batch_norm_decay
    if decay is None:
        decay = nets_factory.get_network(card.model_name).default_params.batch_norm_decay
    return card.with_params(batch_norm_decay=decay)


def compute_dtype(settings, on_gpu):
    """float32, or the mixed-precision compute type (float16 on GPU, bfloat16 on CPU)."""
    if not settings.mixed_precision:
        return tf.float32
    return tf.float16 if on_gpu else tf.bfloat16


def image_summary(batch, preprocess, data_format):
    """The first images of a batch with their augmented ground-truth boxes."""
    images = preprocess.denormalize(batch['image'][:2], data_format) / 255.0
    boxes = batch['bboxes'][:2]
    v1.summary.image(
        'augmented_images_with_boxes',
        tf.image.draw_bounding_boxes(images, boxes, [[1.0, 1.0, 0.0, 1.0]]),
        max_outputs=2,
    )


def input_seed(seed, task_index=0, resume_step=None):
    """The seed of a process's training stream (order and augmentation), None when `seed` is:
    `seed` for a fresh run's chief, `seed + 1000003 * task_index` for each worker, and for a run
    resumed at step `resume_step` > 0 one drawn from that seed and the step. A resumed stream
    that started again from its seed's first example trained on the run's first batches again
    at every resume; replaying the uninterrupted stream up to the step instead would re-read
    every record trained on so far. The same seed and resume steps give the same run."""
    if seed is None:
        return None
    seed += 1000003 * task_index
    if not resume_step:
        return seed
    digest = hashlib.sha256(f'{seed}:{resume_step}'.encode('ascii')).digest()
    return int.from_bytes(digest[:8], 'big') >> 1  # an int64 seed, >= 0


def build_input(
    settings, dataset, net, preprocess, deploy, task_index=0, shared_name=None, resume_step=None
):
    """The training batches' iterator (augmentation + target encoding, see training/input.py),
    seeded by `input_seed` (`resume_step`: the step a resumed run goes on from, else None).

    With `shared_name` (a cluster's workers): an initializable iterator kept by the device's
    resource manager (run `iterator.initializer` in the local init op). Closing a distributed
    session destroys a one-shot iterator's resource, and that destructor waits for tf.data's
    autotuning thread, up to a minute.
    """
    with v1.device(deploy.inputs_device()):
        seed = input_seed(settings.seed, task_index, resume_step)
        batches = train_input.train_dataset(
            dataset,
            preprocess,
            net,
            settings.batch_size,
            match_threshold=settings.match_threshold,
            data_format=settings.data_format,
            seed=seed,
            num_readers=settings.num_readers,
            num_parallel_calls=settings.num_preprocessing_threads or tf.data.AUTOTUNE,
            ignore_crowd=settings.ignore_crowd,
        )
        if shared_name:
            return v1.data.make_initializable_iterator(batches, shared_name=shared_name)
        return v1.data.make_one_shot_iterator(batches)


# RetinaNet's prior (Lin et al. 2017, 3.3: pi = 0.01 for the objects): with focal loss every
# anchor's background term counts, and at even class scores the 1917 anchors of MobileNet-SSD300
# started at a loss of 131 (21 without focal loss), the easy negatives' terms.
FOCAL_BACKGROUND_PRIOR = 0.99


def _background_prior(settings):
    """The background probability the class heads start at: RetinaNet's with focal loss, else
    None (biases at 0). Heads restored from a checkpoint keep their weights."""
    return FOCAL_BACKGROUND_PRIOR if settings.focal_loss_gamma is not None else None


def _clones(settings, deploy, net, iterator, dtype):
    """Model clones with their SSD losses."""

    def clone_fn():
        batch = iterator.get_next()
        images = tf.cast(batch['image'], dtype)
        with (
            slim.arg_scope(
                net.arg_scope(weight_decay=settings.weight_decay, data_format=settings.data_format)
            ),
            slim.arg_scope(
                [ssd_common.multibox_head], background_prior=_background_prior(settings)
            ),
        ):
            _, localisations, logits, _ = net.net(images, is_training=True)
        net.losses(
            logits,
            localisations,
            batch['gclasses'],
            batch['glocalisations'],
            batch['gscores'],
            negative_ratio=settings.negative_ratio,
            alpha=settings.loss_alpha,
            label_smoothing=settings.label_smoothing,
            focal_gamma=settings.focal_loss_gamma,
            focal_alpha=settings.focal_loss_alpha,
        )
        return batch

    return model_deploy.create_clones(deploy, clone_fn)


def learning_rate(settings, global_step, num_samples):
    decay_steps = optimization.decay_steps_per_epochs(
        num_samples, settings.images_per_step, settings.num_epochs_per_decay
    )
    return optimization.learning_rate_schedule(
        global_step,
        settings.learning_rate_decay_type,
        settings.learning_rate,
        decay_steps=decay_steps,
        decay_factor=settings.learning_rate_decay_factor,
        end_learning_rate=settings.end_learning_rate,
        boundaries=list(settings.boundaries),
        values=[float(v) for v in settings.values],
        total_steps=settings.max_number_of_steps,
        warmup_steps=settings.warmup_steps,
    )


def optimizer(settings, rate, dtype, cluster):
    """(optimizer, `cluster_lib.Replication` or None): the flag's optimizer, with dynamic loss
    scaling for float16; on a worker of a cluster, wrapped for synchronous (--sync_replicas) or
    asynchronous steps (see training/cluster.py)."""
    # Each setting under its own name: a list written out could pass one as another.
    opt = optimization.make_optimizer(
        settings.optimizer,
        rate,
        **{name: getattr(settings, name) for name in optimization.OPTIMIZER_READERS},
    )
    if dtype == tf.float16:
        opt = v1.mixed_precision.MixedPrecisionLossScaleOptimizer(opt, 'dynamic')
    if cluster.spec is None:
        if settings.sync_replicas:
            logging.warning(
                '--sync_replicas without a cluster (--ps_hosts/--worker_hosts or '
                'TF_CONFIG): one process, nothing to synchronise.'
            )
        return opt, None
    replication = cluster_lib.Replication(
        cluster,
        sync=settings.sync_replicas,
        replicas_to_aggregate=settings.replicas_to_aggregate,
        last_step=settings.max_number_of_steps,
        wait_secs=settings.cluster_wait_secs,
    )
    return replication.optimizer(opt), replication


def _summary(tag, value, histogram=False):
    """A scalar (or histogram) summary tagged exactly `tag`.
    v1.summary.* take their tag from a unique op name: beside the ops named total_loss and
    learning_rate, and the variables themselves, TensorBoard showed total_loss_1,
    learning_rate_1 and ssd_300_vgg/conv1/conv1_1/weights_1."""
    values, name = tf.cast(value, tf.float32), tag.replace('/', '_') + '_summary'
    if histogram:
        summary = tf.raw_ops.HistogramSummary(tag=tag, values=values, name=name)
    else:
        summary = tf.raw_ops.ScalarSummary(tags=tag, values=values, name=name)
    v1.add_to_collection(v1.GraphKeys.SUMMARIES, summary)


def _summaries(settings, total_loss, rate, variables_to_train):
    _summary('total_loss', total_loss)
    _summary('learning_rate', rate)
    if settings.histograms:
        for variable in variables_to_train:
            _summary(variable.op.name, variable, histogram=True)


def build_train_op(settings, deploy, net, iterator, num_samples, cluster=Cluster()):
    """Clones, losses, gradients and the train op. Returns (train_op, log tensors,
    `cluster_lib.Replication` or None)."""
    preprocess = preprocessing_factory.get_preprocessing(settings.preprocessing_name or net.name)
    on_gpu = bool(tf.config.list_physical_devices('GPU')) and not settings.clone_on_cpu
    dtype = compute_dtype(settings, on_gpu)
    with v1.device(deploy.variables_device()):
        global_step = v1.train.get_or_create_global_step()
    clones = _clones(settings, deploy, net, iterator, dtype)
    image_summary(clones[0].outputs, preprocess, settings.data_format)
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS, clones[0].scope or None)

    with v1.device(deploy.optimizer_device()):
        rate = learning_rate(settings, global_step, num_samples)
        opt, replication = optimizer(settings, rate, dtype, cluster)
    checkpoints.check_scopes_match(
        '--trainable_scopes', settings.trainable_scopes, v1.trainable_variables()
    )
    variables_to_train = checkpoints.filter_variables(
        v1.trainable_variables(), include_scopes=settings.trainable_scopes
    )
    total_loss, grads_and_vars = model_deploy.optimize_clones(
        clones, opt, var_list=variables_to_train
    )
    checked_loss = tf.debugging.check_numerics(total_loss, NON_FINITE_TAG)
    with v1.device(deploy.optimizer_device()), tf.control_dependencies([checked_loss]):
        train_ops = [opt.apply_gradients(grads_and_vars, global_step=global_step)] + update_ops
        if settings.moving_average_decay:
            # After the step's updates (TF's documented order): the averages then take in this
            # step's weights and moving statistics with num_updates = the new step, every step
            # alike, instead of whatever a parallel read of each variable happened to see.
            with v1.device(deploy.variables_device()), tf.control_dependencies(train_ops):
                ema = v1.train.ExponentialMovingAverage(settings.moving_average_decay, global_step)
                train_ops.append(ema.apply(slim.get_model_variables()))
        train_op = tf.group(*train_ops, name='train_op')
    _summaries(settings, total_loss, rate, variables_to_train)
    # Each term is its mean over the clones (each clone's loss is divided by their number), so
    # that the logged terms add up to `total` with several clones too.
    terms = {}
    for clone in clones:
        for l in v1.losses.get_losses(scope=clone.scope or None):
            terms.setdefault(l.op.name.split('/')[-1], []).append(tf.cast(l, tf.float32))
    losses = {
        name: parts[0] if len(parts) == 1 else tf.add_n(parts) / float(len(parts))
        for name, parts in terms.items()
    }
    losses['total'] = total_loss
    regularization = v1.losses.get_regularization_losses()
    if regularization:  # part of total_loss; logged so that the terms add up
        losses['regularization'] = tf.add_n(regularization)
    # TensorBoard's terms are the log's, the clones' mean: one tag each, whatever the clone
    # count (the loss function's own summaries were clone_0/ssd_losses/losses/<term>, ...).
    for name, value in losses.items():
        if name != 'total':  # total_loss has its own summary
            _summary(f'losses/{name}', value)
    with v1.device(deploy.variables_device()), tf.control_dependencies([train_op]):
        # In a cluster other workers move the step: read it once this run's step is done (a
        # parallel read lagged by one: step lines ended at 'step 9/10').
        step_after = global_step.read_value()
    log_tensors = {
        'global_step': global_step,
        'step_after': step_after,
        'learning_rate': rate,
        'losses': losses,
    }
    return train_op, log_tensors, replication


def class_heads_by_name(settings, card, net):
    """(the class heads' variable names, a `checkpoints.ClassGather`) when the fine-tuned
    checkpoint's card names this run's classes (`card`'s) under other labels, or more classes
    (`card_lib.class_indices`): its class heads are then restored for these classes by name, not
    label for label (the classes in another order were trained for the wrong ones). Else None."""
    source = _fine_tune_card(settings, lambda _: None) if settings.checkpoint_path else None
    indices = source and card_lib.class_indices(source, card.class_names)
    if not indices:
        return None
    names = {
        f'{net.name}/{net.cls_scope.format(layer)}/{kind}'
        for layer in card.params.feat_layers
        for kind in ('weights', 'biases')
    }
    return names, checkpoints.ClassGather(indices, source.num_classes)


def fine_tune_restorer(settings, net, class_heads=None):
    """A `checkpoints.Restorer` for --checkpoint_path (None without one); `class_heads`: as
    `class_heads_by_name` gives them."""
    if not settings.checkpoint_path:
        return None
    prefix = checkpoints.resolve_checkpoint(settings.checkpoint_path)
    checkpoints.check_scopes_match(
        '--checkpoint_exclude_scopes',
        settings.checkpoint_exclude_scopes,
        slim.get_model_variables(),
    )
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    items = checkpoints.plan_restore(
        slim.get_model_variables(),
        shapes,
        net.name,
        settings.checkpoint_model_scope,
        settings.checkpoint_exclude_scopes,
        settings.ignore_missing_vars,
        settings.exclude_mismatched_vars,
        class_heads=class_heads,
    )
    logging.info(
        'Fine-tuning from %s: %s',
        prefix,
        checkpoints.describe_restore(items, slim.get_model_variables()),
    )
    return checkpoints.Restorer(prefix, items)


def make_hooks(
    settings, scaffold, log_tensors, cluster, num_examples=None, listeners=(), epoch_origin=None
):
    """(hooks, chief-only hooks, the logging hook) of the session (a cluster's own hooks are
    added by `cluster_lib.Replication.session`); `listeners`: more CheckpointSaverListeners;
    `epoch_origin`: the logging hook's (step, epochs at that step), or None."""
    all_finite = tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(v)) for v in v1.global_variables() if v.dtype.is_floating]
    )
    save_args = (
        {'save_steps': settings.save_interval_steps}
        if settings.save_interval_steps
        else {'save_secs': settings.save_interval_secs}
    )
    chief_hooks = [
        hooks_lib.CheckpointSaverHook(
            settings.train_dir,
            scaffold=scaffold,
            listeners=[
                hooks_lib.FiniteCheckListener(all_finite),
                hooks_lib.CheckpointLogListener(os.path.join(settings.train_dir, 'model.ckpt')),
                *listeners,
            ],
            **save_args,
        ),
        hooks_lib.SummarySaverHook(
            settings.max_number_of_steps,
            save_secs=settings.save_summaries_secs,
            output_dir=settings.train_dir,
            summary_op=v1.summary.merge_all(),
        ),
    ]
    log_hook = hooks_lib.LoggingHook(
        log_tensors,
        settings.log_every_n_steps,
        settings.images_per_step,
        settings.max_number_of_steps,
        count_locally=cluster.spec is None,
        num_examples=num_examples,
        epoch_origin=epoch_origin,
        summary_dir=settings.train_dir if cluster.spec is None else None,
    )
    hooks = [log_hook]
    if settings.max_number_of_steps:
        hooks.append(v1.train.StopAtStepHook(last_step=settings.max_number_of_steps))
    return hooks, chief_hooks, log_hook


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping or preempting the job, `kill`) ends the steps as Ctrl-C does:
    a lone process saves the step reached, a cluster's worker tells the chief it leaves; it
    killed the process at once (a preempted worker stalled the chief until --cluster_wait_secs,
    then the cluster failed). Python runs the handler once TF's call returns (a scheduler's
    SIGKILL follows for a call that hangs). The scripts' handler (`signals.terminate`): a second
    SIGTERM is ignored, not an interrupt of the step's save, and a script ends by the signal. Only
    where signals can be handled (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signals.terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_steps(session, train_op, log_hook, dataset):
    """Runs `train_op` until the session stops. Raises NonFiniteError for a non-finite loss and
    a records error (`tf_errors.records_error`) for data that cannot be read, naming the step
    (the one after `log_hook`'s)."""
    while not session.should_stop():
        try:
            session.run(train_op)
        except RuntimeError as e:
            # An interrupt that arrives while TF builds the exception of a failing call replaces
            # it (pybind11: "... REPLACED BY KeyboardInterrupt"): an interrupt all the same.
            if logs.is_interrupt(e):
                raise KeyboardInterrupt from None
            raise
        except tf_errors.RUN_ERRORS as e:
            step = log_hook.step + 1
            if isinstance(e, tf.errors.InvalidArgumentError) and NON_FINITE_TAG in str(e):
                raise hooks_lib.NonFiniteError('non-finite loss at step %d' % step) from None
            records_error = tf_errors.records_error(e, dataset, f'at step {step}')
            if records_error is None:
                raise
            raise records_error from None


def _training_session(settings, replication, master, config, scaffold, hooks, chief_hooks):
    kwargs = dict(
        checkpoint_dir=settings.train_dir,
        scaffold=scaffold,
        save_checkpoint_secs=None,
        save_checkpoint_steps=None,
        save_summaries_steps=None,
        save_summaries_secs=None,
        log_step_count_steps=0,
        stop_grace_period_secs=5,
    )
    if replication is None:
        return v1.train.MonitoredTrainingSession(
            master=master,
            is_chief=True,
            config=config,
            hooks=hooks,
            chief_only_hooks=chief_hooks,
            **kwargs,
        )
    return replication.session(master, config, hooks=hooks, chief_only_hooks=chief_hooks, **kwargs)


def _reached_last_step(settings, resume_from, step):
    """True (and logged) when the checkpoint to resume is at --max_number_of_steps or past it.

    TF's StopAtStepHook would run one more step (it stops after a step), so a rerun of a
    finished training's command changed its final model; this ends the run as the Estimator
    does. The finished marker is written when a kill had kept the previous run from it. A model
    flag that contradicts the folder's card raises CardError first (`resolve_model_card`'s check).
    `step`: the checkpoint's global step."""
    if not settings.max_number_of_steps or step < settings.max_number_of_steps:
        return False
    # A model flag or --model_card that contradicts the card is an error here too, as on a
    # resume that trains (a finished run said "nothing to train" to another --model_card).
    path = os.path.join(settings.train_dir, card_lib.CARD_FILE)
    if os.path.isfile(path):
        _checked_training_card(settings, path, logging.warning, 'train in a new --train_dir')
    logging.info(
        '%s is at step %d: the training in %s has reached --max_number_of_steps=%d; nothing '
        'to train (raise --max_number_of_steps to train on).',
        os.path.basename(resume_from),
        step,
        settings.train_dir,
        settings.max_number_of_steps,
    )
    if checkpoints.training_finished(settings.train_dir) is None:
        checkpoints.mark_training_finished(settings.train_dir)
    return True


def parameter_counts(settings):
    """(trained, trainable): the parameters this run trains (--trainable_scopes) and all the
    model's trainable ones."""
    trainable = v1.trainable_variables()
    trained = checkpoints.filter_variables(trainable, include_scopes=settings.trainable_scopes)
    return tuple(sum(v.shape.num_elements() for v in group) for group in (trained, trainable))


def resume_line(resume_from, step, checkpoint_path, cluster):
    """The start line of a resume at `step`: the chief (or a lone process) restores
    `resume_from`; another worker restores nothing (it trains the parameter servers' variables
    from their step)."""
    if not cluster.is_chief:
        return (
            f'the chief resumes the model ({os.path.basename(resume_from)}, step {step}, is in '
            '--train_dir); this worker restores nothing: it trains the parameter servers\' '
            'variables from their step'
        )
    ignored = f'; --checkpoint_path {checkpoint_path} is ignored' if checkpoint_path else ''
    return f'resuming from {resume_from} (step {step}, found in --train_dir){ignored}'


def train(settings):
    """Runs (or resumes) a training run; see the module docstring.

    Raises:
      UsageError, card_lib.CardError, ValueError: settings that cannot work (message says why).
      folder_lock.FolderBusy (a ValueError): another training is writing to train_dir.
      hooks_lib.NonFiniteError: the loss or the weights became NaN/inf (nothing saved).
      tf_errors.RecordsError (a ValueError): reading the records failed (nothing saved).
      ClusterError: a process of the cluster failed, or was missing for cluster_wait_secs.
    """
    cluster = cluster_setup(settings)
    config = session_config(settings, cluster)
    master = ''
    if cluster.spec is not None:
        logging.info(
            cluster_lib.describe_role(
                cluster,
                settings.sync_replicas,
                settings.replicas_to_aggregate,
                settings.cluster_wait_secs,
            )
        )
        server = cluster_lib.start_server(cluster, config)
        if cluster.job_name == 'ps':
            cluster_lib.serve(cluster, server, settings.cluster_wait_secs)
            return
        master = server.target
    if settings.dataset_dir is None:
        raise UsageError('--dataset_dir is required.')
    dataset_factory.check_dataset_name(settings.dataset_name)
    check_data_format(settings)
    if os.path.lexists(settings.train_dir) and not os.path.isdir(settings.train_dir):
        raise UsageError(
            f'--train_dir {settings.train_dir} is not a folder; pass the folder for the '
            f'checkpoints (a new one, or a training\'s to resume it).'
        )
    checkpoints.check_train_dir(settings.train_dir)
    # Before anything reads or writes the folder: a second training into it would resume from
    # the same checkpoint, then save over and rotate away this one's (tf_extended/folder_lock).
    # The chief holds it for its cluster; the other workers share the folder with it.
    lock = folder_lock.FolderLock(settings.train_dir)
    try:
        if cluster.is_chief:
            with signals.held():  # a Ctrl-C or SIGTERM as it is taken: released below
                lock = folder_lock.acquire(
                    settings.train_dir, '--train_dir', folder_lock.TRAINING_ROLE
                )
        _train(settings, cluster, config, master)
    finally:
        lock.release()


def _train(settings, cluster, config, master):
    """`train` from the resume on (the folder locked by the chief)."""
    v1.disable_eager_execution()
    resume_from = checkpoints.resume_checkpoint(settings.train_dir)
    # Read once, by the process that restores it (the chief; other workers restore nothing).
    resume_step = (
        checkpoints.checkpoint_step(resume_from)
        if resume_from is not None and cluster.is_chief
        else None
    )
    if (
        resume_step is not None
        and cluster.spec is None
        and _reached_last_step(settings, resume_from, resume_step)
    ):
        return

    with tf.Graph().as_default():
        if settings.seed is not None:
            v1.set_random_seed(settings.seed)
        deploy = model_deploy.DeploymentConfig(
            settings.num_clones, settings.clone_on_cpu, cluster.worker_device, cluster.spec
        )
        dataset = dataset_factory.get_dataset(
            settings.dataset_name,
            settings.dataset_split_name,
            settings.dataset_dir,
            num_classes=settings.num_classes,
        )
        # What the reader checked, since an epoch's example count is not (issue #16).
        logging.info(
            'Dataset %s/%s: %d examples in %d shard(s), %s.',
            settings.dataset_name,
            settings.dataset_split_name,
            dataset.num_samples,
            len(dataset.files),
            'as its metadata lists them (each shard\'s presence and size checked; '
            'tf_convert_data.py --verify compares their digests); training does not '
            'count the examples it reads'
            if dataset.metadata is not None
            else 'counted from the record headers (no metadata)',
        )
        card, card_path = resolve_model_card(settings, dataset, resume_from)
        card = net_card(card, settings)
        restarted = card_path is not None and resume_from is None
        if restarted:
            card = restarted_card(card, settings, dataset)
        # The settings the checkpoint's training used, as its card records them (before this
        # resume is recorded): the refusals of a resume name their values.
        runs = recorded_runs(card) if card_path is not None else None
        trained = runs[-1][1] if runs else None
        # (level, line) logged after the start lines: a resume's changes, a new run's warnings.
        start_notes, listeners = [], []
        if restarted:
            start_notes.append(
                (
                    logging.INFO,
                    f'{card_path}: no checkpoint was written with it (a run stopped before its '
                    f'first); it records this run\'s settings and data from now on',
                )
            )
        # Checkpoints beyond a lower --max_to_keep: unlisted at start (else TF's Saver would take
        # them over), deleted once this run has written one of its own.
        unlisted = []
        if resume_from is not None and cluster.is_chief:
            listeners.append(
                hooks_lib.FirstSavePastListener(
                    resume_step, lambda: _remove_unlisted(settings.train_dir, unlisted)
                )
            )
        if card_path is not None and resume_from is not None and cluster.is_chief:
            resumed, start_notes = _resume_record(card, settings, dataset, resume_step, card_path)
            if resumed is not card:
                card = resumed
                # Recorded once this run has trained: a resume aborted at once (seeing its log's
                # warning, say) leaves the card as it was.
                listeners.append(
                    hooks_lib.FirstSavePastListener(
                        resume_step, lambda: card_lib.write(card_path, card)
                    )
                )
        net = card.net()
        preprocess = card.preprocessing()
        # Every worker's: others do not read the checkpoint (resume_step is the chief's).
        named_step = resume_from and checkpoints.checkpoint_step_from_name(resume_from)
        iterator = build_input(
            settings,
            dataset,
            net,
            preprocess,
            deploy,
            cluster.task_index,
            shared_name='ssd_train_input' if cluster.spec is not None else None,
            # Other workers read no checkpoint: the step its name says (a folder they see).
            resume_step=resume_step if cluster.is_chief else named_step,
        )
        train_op, log_tensors, replication = build_train_op(
            settings, deploy, net, iterator, dataset.num_samples, cluster
        )
        restorer = None
        if resume_from is not None and cluster.is_chief:
            # The Saver's restore would fail in a long traceback (e.g. another --optimizer), or
            # its saves drop what the graph lacks (see check_resumable).
            checkpoints.check_resumable(
                resume_from, {v.op.name: v for v in v1.global_variables()}, card_path, trained
            )
        if resume_from is None and cluster.is_chief:
            restorer = fine_tune_restorer(settings, net, class_heads_by_name(settings, card, net))
            warnings = (
                batch_norm_start_warning(
                    card, settings.max_number_of_steps, _fresh_statistics(restorer)
                ),
                frozen_start_warning(settings, restorer),
                warmup_start_warning(settings.warmup_steps, settings.max_number_of_steps),
            )
            start_notes += [(logging.WARNING, warning) for warning in warnings if warning]
        scaffold = v1.train.Scaffold(
            # Relative paths in the `checkpoint` state file: a copy of the folder then names its
            # own checkpoints, not the original folder's (for TF's resume and for our readers).
            saver=hooks_lib.Saver(
                max_to_keep=settings.max_to_keep,
                sharded=cluster.spec is not None,
                save_relative_paths=True,
            ),
            init_fn=(lambda _, session: restorer.restore(session)) if restorer else None,
            local_init_op=tf.group(v1.train.Scaffold.default_local_init_op(), iterator.initializer)
            if cluster.spec is not None
            else None,
        )
        epochs = None if resume_step is None else epochs_at(card, resume_step)
        hooks, chief_hooks, log_hook = make_hooks(
            settings,
            scaffold,
            log_tensors,
            cluster,
            dataset.num_samples,
            listeners,
            epoch_origin=None if epochs is None else (resume_step, epochs),
        )
        for line in hooks_lib.start_lines(
            card,
            card_path or 'new, %s' % os.path.join(settings.train_dir, card_lib.CARD_FILE),
            dataset,
            settings,
            parameter_counts(settings),
            named_step,
            resume_from and resume_line(resume_from, named_step, settings.checkpoint_path, cluster),
            log_tensors['losses'],
        ):
            logging.info('%s', line)
        for level, line in start_notes:
            logging.log(level, '%s', line)
        if cluster.is_chief:
            checkpoints.clear_training_finished(settings.train_dir)
            checkpoints.remove_interrupted_saves(settings.train_dir)
            rewritten = checkpoints.localize_state_file(settings.train_dir)
            if rewritten:
                logging.info(
                    'Rewrote %s to name %s by a relative path (it named checkpoints by '
                    'absolute path, possibly another folder\'s, or deleted ones, or none).',
                    rewritten,
                    os.path.basename(resume_from),
                )
            unlisted += checkpoints.unlist_beyond_newest(settings.train_dir, settings.max_to_keep)
            if unlisted:
                logging.info(
                    '%d checkpoint(s) older than the --max_to_keep=%d newest (%s) are removed once '
                    'this run has written its first checkpoint.',
                    len(unlisted),
                    settings.max_to_keep,
                    ', '.join(os.path.basename(p) for p in unlisted),
                )
            if resume_from is None:  # a new card, or one no checkpoint was written with
                os.makedirs(settings.train_dir, exist_ok=True)
                card_lib.write(os.path.join(settings.train_dir, card_lib.CARD_FILE), card)
        saver_hook = next(h for h in chief_hooks if isinstance(h, hooks_lib.CheckpointSaverHook))
        with _training_session(
            settings, replication, master, config, scaffold, hooks, chief_hooks
        ) as session:
            try:
                with _sigterm_as_interrupt():
                    _run_steps(session, train_op, log_hook, dataset)
            except KeyboardInterrupt:
                # TF's hook saves the last step only when the session ends without an
                # exception: Ctrl-C (or SIGTERM) lost every step since the last save (up to
                # --save_interval_secs of training). A lone process saves it (its step's update
                # is complete: Python raises the interrupt between TF calls); a cluster's chief
                # does not, its workers may be mid-step.
                if cluster.spec is None:
                    session.run_step_fn(lambda step_context: saver_hook.end(step_context.session))
                raise
    summary, latest = log_hook.summary(), None
    if cluster.is_chief:
        checkpoints.mark_training_finished(settings.train_dir)
        latest = os.path.basename(checkpoints.latest_in_directory(settings.train_dir) or 'none')
        if cluster.spec is not None:
            # Asynchronous workers may take every step; the chief's last checkpoint, saved at
            # its end, holds the final one.
            last = checkpoints.checkpoint_step_from_name(latest)
            summary['last_step'] = max(summary['last_step'], last or 0)
    logging.info(
        '%s',
        hooks_lib.end_line(
            summary,
            settings.train_dir,
            latest,
            os.path.join(settings.train_dir, card_lib.CARD_FILE),
        ),
    )
