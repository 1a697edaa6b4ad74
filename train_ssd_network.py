"""Trains an SSD network (TF-Slim train_image_classifier conventions, graph mode).

    python train_ssd_network.py --train_dir=logs/ssd300 --dataset_name=pascalvoc_0712 \
        --dataset_split_name=trainval --dataset_dir=tfrecords --model_name=ssd_300_vgg \
        --checkpoint_path=checkpoints/vgg_16.ckpt --checkpoint_model_scope=vgg_16 \
        --optimizer=momentum --learning_rate=0.001 --learning_rate_decay_type=piecewise \
        --boundaries=80000,100000 --batch_size=32 --max_number_of_steps=120000

A checkpoint already in --train_dir means resume (global step, optimizer slots and the learning
rate schedule continue; --checkpoint_path is then ignored). See --helpfull for every flag.
Distributed: --ps_hosts/--worker_hosts/--job_name/--task_index (or TF_CONFIG); worker 0 is the
chief and writes checkpoints and summaries.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from model import checkpoints
from tf_extended import logs
from training import model_deploy
from training import optimization
from training import input as train_input
from nets import nets_factory
from nets import ssd_params
from preprocessing import preprocessing_factory

v1 = tf.compat.v1
FLAGS = flags.FLAGS

# General.
flags.DEFINE_string('train_dir', '/tmp/tfmodel/', 'Where checkpoints and event logs are written.')
flags.DEFINE_integer('num_clones', 1, 'Model clones on this machine (GPUs, or CPU clones).',
                     lower_bound=1)
flags.DEFINE_boolean('clone_on_cpu', False, 'Put the clones on the CPU.')
flags.DEFINE_integer('num_readers', 4, 'Shards read in parallel.', lower_bound=1)
flags.DEFINE_integer('num_preprocessing_threads', 4,
                     'Parallel calls of the augmentation + encoding map (0: autotune).',
                     lower_bound=0)
flags.DEFINE_integer('log_every_n_steps', 10, 'Steps between log lines.', lower_bound=1)
flags.DEFINE_integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.',
                     lower_bound=1)
flags.DEFINE_integer('save_interval_secs', 600, 'Seconds between checkpoints (unless '
                     '--save_interval_steps is set).', lower_bound=1)
flags.DEFINE_integer('save_interval_steps', None, 'Steps between checkpoints (overrides '
                     '--save_interval_secs).', lower_bound=1)
flags.DEFINE_integer('max_to_keep', 5, 'Checkpoints kept in train_dir.', lower_bound=1)
flags.DEFINE_float('gpu_memory_fraction', 0.8, 'Fraction of GPU memory per process.')
flags.DEFINE_integer('seed', None, 'Seed of initialisers, shuffling and augmentation '
                     '(reproducible runs; not set = random).')
flags.DEFINE_boolean('histograms', False, 'Also write histograms of the trainable variables.')
# Distributed (between-graph replication).
flags.DEFINE_string('ps_hosts', '', 'Comma-separated host:port of the parameter servers.')
flags.DEFINE_string('worker_hosts', '', 'Comma-separated host:port of the workers.')
flags.DEFINE_enum('job_name', None, ['ps', 'worker'], 'This process\' job in the cluster.')
flags.DEFINE_integer('task_index', 0, 'This process\' index in its job; worker 0 is the chief.',
                     lower_bound=0)
flags.DEFINE_boolean('sync_replicas', False, 'Aggregate gradients of the workers synchronously '
                     '(SyncReplicasOptimizer).')
flags.DEFINE_integer('replicas_to_aggregate', None, 'Gradients aggregated per synchronous step '
                     '(default: the number of workers).', lower_bound=1)
# Loss.
flags.DEFINE_float('loss_alpha', 1., 'Weight of the localisation loss.')
flags.DEFINE_float('negative_ratio', 3., 'Hard negatives per positive.')
flags.DEFINE_float('match_threshold', 0.5, 'IoU for an anchor to match a ground-truth box.')
flags.DEFINE_float('label_smoothing', 0.0, 'Label smoothing epsilon of the class loss.')
flags.DEFINE_float('focal_loss_gamma', None, 'If set, softmax focal loss with this gamma '
                   'instead of hard-negative mining.')
# Optimisation.
flags.DEFINE_float('weight_decay', 0.0005, 'L2 weight decay of the convolutions.')
flags.DEFINE_enum('optimizer', 'adam', optimization.OPTIMIZERS, 'The optimizer.')
flags.DEFINE_float('adadelta_rho', 0.95, 'Adadelta decay rate.')
flags.DEFINE_float('adagrad_initial_accumulator_value', 0.1, 'Adagrad initial accumulator.')
flags.DEFINE_float('adam_beta1', 0.9, 'Adam first-moment decay.')
flags.DEFINE_float('adam_beta2', 0.999, 'Adam second-moment decay.')
flags.DEFINE_float('opt_epsilon', 1e-8, 'Epsilon of adam, adadelta and rmsprop (the older '
                   'port\'s 1.0 all but stopped Adam).')
flags.DEFINE_float('ftrl_learning_rate_power', -0.5, 'FTRL learning rate power.')
flags.DEFINE_float('ftrl_initial_accumulator_value', 0.1, 'FTRL initial accumulator.')
flags.DEFINE_float('ftrl_l1', 0.0, 'FTRL L1 regularisation.')
flags.DEFINE_float('ftrl_l2', 0.0, 'FTRL L2 regularisation.')
flags.DEFINE_float('momentum', 0.9, 'Momentum of the momentum optimizer.')
flags.DEFINE_float('rmsprop_momentum', 0.9, 'RMSProp momentum.')
flags.DEFINE_float('rmsprop_decay', 0.9, 'RMSProp decay.')
flags.DEFINE_float('learning_rate', 0.001, 'Initial learning rate.')
flags.DEFINE_enum('learning_rate_decay_type', 'exponential', optimization.DECAY_TYPES,
                  'Learning rate schedule.')
flags.DEFINE_float('learning_rate_decay_factor', 0.94, 'Exponential decay factor; piecewise '
                   'factor when --values is not given.')
flags.DEFINE_float('num_epochs_per_decay', 2.0, 'Epochs per exponential / polynomial decay.')
flags.DEFINE_float('end_learning_rate', 0.0001, 'Final rate of polynomial and cosine decay.')
flags.DEFINE_list('boundaries', [], 'Piecewise decay steps, e.g. 80000,100000 (Caffe SSD300).')
flags.DEFINE_list('values', [], 'Piecewise rates (one more than --boundaries); default: '
                  'learning_rate * learning_rate_decay_factor^i.')
flags.DEFINE_integer('warmup_steps', 0, 'Linear warmup steps (any decay type).', lower_bound=0)
flags.DEFINE_float('moving_average_decay', None, 'If set, keep an exponential moving average '
                   'of the model variables with this decay.')
flags.DEFINE_boolean('mixed_precision', False, 'Compute in bfloat16 on CPU, float16 with '
                     'dynamic loss scaling on GPU; variables and the loss stay float32.')
# Data.
flags.DEFINE_string('dataset_name', 'pascalvoc_2007', 'Registered dataset name.')
flags.DEFINE_string('dataset_split_name', 'train', 'Split to train on.')
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_integer('num_classes', None, 'Classes including background (default: from the '
                     'dataset; 21 for VOC).')
flags.DEFINE_string('model_name', 'ssd_300_vgg', 'Network: %s.'
                    % ', '.join(sorted(nets_factory.networks_map)))
flags.DEFINE_string('preprocessing_name', None, 'Preprocessing (default: the model\'s).')
flags.DEFINE_integer('batch_size', 32, 'Images per clone per step.', lower_bound=1)
flags.DEFINE_integer('max_number_of_steps', None, 'Stop at this global step (default: never).')
flags.DEFINE_enum('data_format', 'NHWC', ['NHWC', 'NCHW'], 'Image layout (NCHW: GPU only).')
flags.DEFINE_string('anchor_sizes', None, 'Anchor size preset of the model (%s).'
                    % '; '.join('%s: %s' % (m, ', '.join(sorted(p)))
                                for m, p in sorted(ssd_params.ANCHOR_SIZE_PRESETS.items())))
flags.DEFINE_float('depth_multiplier', None, 'Width multiplier of ssd_300_mobilenet.')
flags.DEFINE_float('batch_norm_decay', None, 'Moving-average decay of the batch-norm statistics '
                   '(default: the model\'s, 0.997); lower it for runs of a few hundred steps.')
# Fine-tuning.
flags.DEFINE_string('checkpoint_path', None, 'Checkpoint to initialise from: prefix, .index or '
                    '.data-* file, or directory (latest). Ignored when train_dir has one.')
flags.DEFINE_string('checkpoint_model_scope', None, 'The checkpoint\'s name for the model '
                    'scope (leading-scope rewrite); vgg_16 or MobilenetV1 load TF-Slim ImageNet '
                    'backbones (VGG fc6/fc7 sub-sampled into conv6/conv7).')
flags.DEFINE_string('checkpoint_exclude_scopes', None, 'Comma-separated scopes not restored.')
flags.DEFINE_string('trainable_scopes', None, 'Comma-separated scopes trained (default: all).')
flags.DEFINE_boolean('ignore_missing_vars', False, 'Skip variables the checkpoint lacks.')
flags.DEFINE_boolean('exclude_mismatched_vars', False, 'Skip (with a warning) variables whose '
                     'shape differs from the checkpoint\'s, e.g. heads after a num_classes change.')

NON_FINITE_TAG = 'Non-finite total loss'


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf: stop without saving."""


class FiniteCheckListener(v1.train.CheckpointSaverListener):
    """Refuses to save (and stops training) when a variable is not finite."""

    def __init__(self, all_finite):
        self._all_finite = all_finite

    def before_save(self, session, global_step_value):
        if not session.run(self._all_finite):
            raise NonFiniteError('non-finite weights at step %d' % global_step_value)


class LoggingHook(v1.train.SessionRunHook):
    """Every `every_n` steps logs step, loss terms, learning rate, images/s and ETA.

    `step` is the global step after this process' latest run. Alone, it is read at start and
    then counted (exact); in a cluster, where other workers move it too, it is the value read
    during the run (may lag by one).
    """

    def __init__(self, tensors, every_n, images_per_step, last_step, count_locally=True):
        self._tensors = tensors
        self._every_n = every_n
        self._images_per_step = images_per_step
        self._last_step = last_step
        self._count_locally = count_locally
        self.step = None

    def after_create_session(self, session, coord):
        self.step = int(session.run(self._tensors['global_step']))
        self._local_steps = 0
        self._window = (time.time(), 0)

    def before_run(self, run_context):
        return v1.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        values = run_values.results
        self._local_steps += 1
        self.step = self.step + 1 if self._count_locally else int(values['global_step'])
        if (self.step if self._count_locally else self._local_steps) % self._every_n:
            return
        now = time.time()
        start, start_step = self._window
        self._window = (now, self._local_steps)
        steps_per_sec = (self._local_steps - start_step) / max(now - start, 1e-9)
        losses = ' '.join('%s=%.4f' % item for item in sorted(values['losses'].items()))
        eta = ''
        if self._last_step:
            eta = ' ETA %s' % time.strftime(
                '%H:%M:%S', time.gmtime(max(self._last_step - self.step, 0) / steps_per_sec))
        logging.info('step %d: %s lr=%.4g %.1f images/s%s', self.step, losses,
                     values['learning_rate'], steps_per_sec * self._images_per_step, eta)


def cluster_setup():
    """(cluster or None, job_name, task_index) from the flags or TF_CONFIG."""
    if FLAGS.worker_hosts or FLAGS.ps_hosts:
        jobs = {'worker': FLAGS.worker_hosts.split(',')}
        if FLAGS.ps_hosts:
            jobs['ps'] = FLAGS.ps_hosts.split(',')
        if FLAGS.job_name is None:
            raise app.UsageError('--job_name (ps or worker) is required with --worker_hosts.')
        return tf.train.ClusterSpec(jobs), FLAGS.job_name, FLAGS.task_index
    if os.environ.get('TF_CONFIG'):
        config = json.loads(os.environ['TF_CONFIG'])
        unknown = set(config.get('cluster', {})) - {'ps', 'worker'}
        if unknown:
            raise app.UsageError('TF_CONFIG: only ps and worker jobs are supported; got %s.'
                                 % sorted(unknown))
        task = config.get('task', {})
        return tf.train.ClusterSpec(config['cluster']), task['type'], int(task.get('index', 0))
    return None, None, 0


def session_config(job_name=None, task_index=0):
    config = v1.ConfigProto(allow_soft_placement=True)
    config.gpu_options.per_process_gpu_memory_fraction = FLAGS.gpu_memory_fraction
    if job_name == 'worker':
        # Workers talk to the parameter servers only, not to each other.
        config.device_filters.extend(['/job:ps', '/job:worker/task:%d' % task_index])
    return config


def build_net(num_classes):
    cls = nets_factory.get_network(FLAGS.model_name)
    overrides = {'num_classes': num_classes}
    if FLAGS.anchor_sizes:
        overrides['anchor_sizes'] = tuple(
            ssd_params.anchor_size_preset(FLAGS.model_name, FLAGS.anchor_sizes))
    if FLAGS.depth_multiplier is not None:
        if FLAGS.model_name != 'ssd_300_mobilenet':
            raise app.UsageError('--depth_multiplier applies to ssd_300_mobilenet only.')
        overrides['depth_multiplier'] = FLAGS.depth_multiplier
    if FLAGS.batch_norm_decay is not None:
        overrides['batch_norm_decay'] = FLAGS.batch_norm_decay
    return cls(cls.default_params._replace(**overrides))


def compute_dtype(on_gpu):
    """float32, or the mixed-precision compute type (float16 on GPU, bfloat16 on CPU)."""
    if not FLAGS.mixed_precision:
        return tf.float32
    return tf.float16 if on_gpu else tf.bfloat16


def image_summary(batch, preprocess):
    """The first images of a batch with their augmented ground-truth boxes."""
    images = preprocess.denormalize(batch['image'][:2], FLAGS.data_format) / 255.
    boxes = batch['bboxes'][:2]
    v1.summary.image('augmented_images_with_boxes',
                     tf.image.draw_bounding_boxes(images, boxes, [[1., 1., 0., 1.]]),
                     max_outputs=2)


def build_train_op(deploy, net, iterator, dataset, num_workers, is_chief):
    """Clones, losses, gradients and the train op. Returns (train_op, log tensors, sync hook)."""
    preprocess = preprocessing_factory.get_preprocessing(FLAGS.preprocessing_name
                                                         or FLAGS.model_name)
    on_gpu = bool(tf.config.list_physical_devices('GPU')) and not FLAGS.clone_on_cpu
    dtype = compute_dtype(on_gpu)
    with v1.device(deploy.variables_device()):
        global_step = v1.train.get_or_create_global_step()

    def clone_fn():
        batch = iterator.get_next()
        images = tf.cast(batch['image'], dtype)
        with slim.arg_scope(net.arg_scope(weight_decay=FLAGS.weight_decay,
                                          data_format=FLAGS.data_format)):
            _, localisations, logits, _ = net.net(images, is_training=True)
        net.losses(logits, localisations, batch['gclasses'], batch['glocalisations'],
                   batch['gscores'], negative_ratio=FLAGS.negative_ratio, alpha=FLAGS.loss_alpha,
                   label_smoothing=FLAGS.label_smoothing, focal_gamma=FLAGS.focal_loss_gamma)
        return batch

    clones = model_deploy.create_clones(deploy, clone_fn)
    image_summary(clones[0].outputs, preprocess)
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS, clones[0].scope or None)

    images_per_step = FLAGS.batch_size * FLAGS.num_clones
    with v1.device(deploy.optimizer_device()):
        decay_steps = optimization.decay_steps_per_epochs(dataset.num_samples, images_per_step,
                                                          FLAGS.num_epochs_per_decay)
        learning_rate = optimization.learning_rate_schedule(
            global_step, FLAGS.learning_rate_decay_type, FLAGS.learning_rate,
            decay_steps=decay_steps, decay_factor=FLAGS.learning_rate_decay_factor,
            end_learning_rate=FLAGS.end_learning_rate, boundaries=FLAGS.boundaries,
            values=[float(v) for v in FLAGS.values], total_steps=FLAGS.max_number_of_steps,
            warmup_steps=FLAGS.warmup_steps)
        optimizer = optimization.make_optimizer(
            FLAGS.optimizer, learning_rate, opt_epsilon=FLAGS.opt_epsilon,
            adadelta_rho=FLAGS.adadelta_rho,
            adagrad_initial_accumulator_value=FLAGS.adagrad_initial_accumulator_value,
            adam_beta1=FLAGS.adam_beta1, adam_beta2=FLAGS.adam_beta2,
            ftrl_learning_rate_power=FLAGS.ftrl_learning_rate_power,
            ftrl_initial_accumulator_value=FLAGS.ftrl_initial_accumulator_value,
            ftrl_l1=FLAGS.ftrl_l1, ftrl_l2=FLAGS.ftrl_l2, momentum=FLAGS.momentum,
            rmsprop_momentum=FLAGS.rmsprop_momentum, rmsprop_decay=FLAGS.rmsprop_decay)
        if dtype == tf.float16:
            optimizer = v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, 'dynamic')
        sync_hook = None
        if FLAGS.sync_replicas:
            optimizer = v1.train.SyncReplicasOptimizer(
                optimizer, replicas_to_aggregate=FLAGS.replicas_to_aggregate or num_workers,
                total_num_replicas=num_workers)
            sync_hook = optimizer.make_session_run_hook(is_chief)

    variables_to_train = checkpoints.filter_variables(v1.trainable_variables(),
                                                      include_scopes=FLAGS.trainable_scopes)
    if not variables_to_train:
        raise app.UsageError('--trainable_scopes=%s matches no trainable variable.'
                             % FLAGS.trainable_scopes)
    total_loss, grads_and_vars = model_deploy.optimize_clones(clones, optimizer,
                                                              var_list=variables_to_train)
    checked_loss = tf.debugging.check_numerics(total_loss, NON_FINITE_TAG)
    with v1.device(deploy.optimizer_device()), tf.control_dependencies([checked_loss]):
        apply_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
        train_ops = [apply_op] + update_ops
        if FLAGS.moving_average_decay:
            with v1.device(deploy.variables_device()):
                ema = v1.train.ExponentialMovingAverage(FLAGS.moving_average_decay, global_step)
                train_ops.append(ema.apply(slim.get_model_variables()))
        train_op = tf.group(*train_ops, name='train_op')

    v1.summary.scalar('total_loss', total_loss)
    v1.summary.scalar('learning_rate', learning_rate)
    regularization = v1.losses.get_regularization_losses()
    if regularization:
        v1.summary.scalar('losses/regularization', tf.add_n(regularization))
    if FLAGS.histograms:
        for variable in variables_to_train:
            v1.summary.histogram(variable.op.name, variable)
    losses = {l.op.name.split('/')[-1]: l
              for l in v1.losses.get_losses(scope=clones[0].scope or None)}
    losses['total'] = total_loss
    log_tensors = {'global_step': global_step, 'learning_rate': learning_rate, 'losses': losses}
    return train_op, log_tensors, sync_hook


def fine_tune_restorer(net):
    """A `checkpoints.Restorer` for --checkpoint_path (None without one)."""
    if not FLAGS.checkpoint_path:
        return None
    prefix = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    items = checkpoints.plan_restore(
        slim.get_model_variables(), shapes, net.name, FLAGS.checkpoint_model_scope,
        FLAGS.checkpoint_exclude_scopes, FLAGS.ignore_missing_vars, FLAGS.exclude_mismatched_vars)
    logging.info('Fine-tuning from %s: %d variables restored.', prefix, len(items))
    return checkpoints.Restorer(prefix, items)


def train():
    cluster, job_name, task_index = cluster_setup()
    config = session_config(job_name, task_index)
    master, is_chief, num_workers, worker_device = '', True, 1, ''
    if cluster is not None:
        server = tf.distribute.Server(cluster, job_name=job_name, task_index=task_index,
                                      config=config)
        if job_name == 'ps':
            logging.info('Parameter server %d serving.', task_index)
            server.join()
            return
        master, is_chief = server.target, task_index == 0
        num_workers = len(cluster.job_tasks('worker'))
        worker_device = '/job:worker/task:%d' % task_index
    if FLAGS.dataset_dir is None:
        raise app.UsageError('--dataset_dir is required.')
    v1.disable_eager_execution()
    resume_from = checkpoints.latest_in_directory(FLAGS.train_dir) \
        if os.path.isdir(FLAGS.train_dir) else None

    with tf.Graph().as_default():
        if FLAGS.seed is not None:
            v1.set_random_seed(FLAGS.seed)
        deploy = model_deploy.DeploymentConfig(FLAGS.num_clones, FLAGS.clone_on_cpu,
                                               worker_device, cluster)
        dataset = dataset_factory.get_dataset(FLAGS.dataset_name, FLAGS.dataset_split_name,
                                              FLAGS.dataset_dir, num_classes=FLAGS.num_classes)
        net = build_net(dataset.num_classes)
        with v1.device(deploy.inputs_device()):
            seed = None if FLAGS.seed is None else FLAGS.seed + 1000003 * task_index
            batches = train_input.train_dataset(
                dataset, preprocessing_factory.get_preprocessing(FLAGS.preprocessing_name
                                                                 or FLAGS.model_name),
                net, FLAGS.batch_size, match_threshold=FLAGS.match_threshold,
                data_format=FLAGS.data_format, seed=seed, num_readers=FLAGS.num_readers,
                num_parallel_calls=FLAGS.num_preprocessing_threads or tf.data.AUTOTUNE)
            iterator = v1.data.make_one_shot_iterator(batches)
        train_op, log_tensors, sync_hook = build_train_op(deploy, net, iterator, dataset,
                                                          num_workers, is_chief)
        restorer = None
        if resume_from is not None:
            logging.info('Resuming from %s (found in --train_dir); --checkpoint_path %s is '
                         'ignored.', resume_from, FLAGS.checkpoint_path)
        elif is_chief:
            restorer = fine_tune_restorer(net)

        all_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                                    for v in v1.global_variables() if v.dtype.is_floating])
        scaffold = v1.train.Scaffold(
            saver=v1.train.Saver(max_to_keep=FLAGS.max_to_keep, sharded=cluster is not None),
            init_fn=(lambda _, session: restorer.restore(session)) if restorer else None)
        save_args = ({'save_steps': FLAGS.save_interval_steps} if FLAGS.save_interval_steps
                     else {'save_secs': FLAGS.save_interval_secs})
        chief_hooks = [
            v1.train.CheckpointSaverHook(FLAGS.train_dir, scaffold=scaffold,
                                         listeners=[FiniteCheckListener(all_finite)],
                                         **save_args),
            v1.train.SummarySaverHook(save_secs=FLAGS.save_summaries_secs,
                                      output_dir=FLAGS.train_dir,
                                      summary_op=v1.summary.merge_all()),
        ]
        log_hook = LoggingHook(log_tensors, FLAGS.log_every_n_steps,
                               FLAGS.batch_size * FLAGS.num_clones, FLAGS.max_number_of_steps,
                               count_locally=cluster is None)
        hooks = [log_hook]
        if FLAGS.max_number_of_steps:
            hooks.append(v1.train.StopAtStepHook(last_step=FLAGS.max_number_of_steps))
        if sync_hook is not None:
            hooks.append(sync_hook)
        if is_chief:
            checkpoints.clear_training_finished(FLAGS.train_dir)
        with v1.train.MonitoredTrainingSession(
                master=master, is_chief=is_chief, checkpoint_dir=FLAGS.train_dir,
                scaffold=scaffold, hooks=hooks, chief_only_hooks=chief_hooks,
                save_checkpoint_secs=None, save_checkpoint_steps=None,
                save_summaries_steps=None, save_summaries_secs=None, log_step_count_steps=0,
                # SyncReplicasOptimizer's token queue runner is blocked at the end; don't
                # wait the default 120 s for it.
                stop_grace_period_secs=5, config=config) as session:
            while not session.should_stop():
                try:
                    session.run(train_op)
                except tf.errors.InvalidArgumentError as e:
                    if NON_FINITE_TAG not in str(e):
                        raise
                    raise NonFiniteError('non-finite loss at step %d' % (log_hook.step + 1)) \
                        from None
    if is_chief:
        checkpoints.mark_training_finished(FLAGS.train_dir)
        logging.info('Training finished; checkpoints in %s (%s written for the eval watcher).',
                     FLAGS.train_dir, checkpoints.FINISHED_MARKER)


def main(_):
    logs.absl_only(logging.INFO)
    try:
        train()
    except NonFiniteError as e:
        last_good = checkpoints.latest_in_directory(FLAGS.train_dir)
        sys.exit('train_ssd_network: error: %s; training stopped without saving. Last good '
                 'checkpoint: %s. Lower the learning rate or check the data.'
                 % (e, last_good or 'none was written'))
    except (ValueError, FileNotFoundError) as e:
        sys.exit('train_ssd_network: error: %s' % e)


if __name__ == '__main__':
    app.run(main)
