"""Training hooks and what a person reads of a run: the start summary, one line per
`log_every_n_steps` steps, one line per checkpoint, the end summary; the finite-weights check
before a save, and the Saver whose failure to write a checkpoint is one error naming the file.

A step line (`LOG_LINE` parses it):

    step 240/1600 (epoch 5.3): loss over 80 steps total=3.1416 cross_entropy_neg=0.9 \
cross_entropy_pos=1.2 localization=0.8 regularization=0.2 lr=0.0039 31.2 images/s ETA 0:12:34

The loss terms are means over the steps since the previous line; `total` is what the optimizer
minimises: the other terms' sum, weight decay (`regularization`) included. images/s and the ETA
come from `RateEstimator`: the rate over a window that grows with the run (a quarter of the
elapsed time, at least a minute), so that a loaded machine's alternating speeds do not make the
ETA swing. A lone process also writes that rate beside each line into the run's TensorBoard
events, as `global_step/sec` (the tag TF-Slim, the Estimator and the TF Object Detection API
write) and `images/sec`.
"""

import collections
import os
import re
import time

from absl import logging
import tensorflow as tf

from model import card as card_lib
from tf_extended import logs
from tf_extended import tf_errors
from training import optimization

v1 = tf.compat.v1

LOG_LINE = re.compile(r'step (\d+)(?:/\d+)?(?: \(epoch [\d.]+\))?: loss over \d+ steps? (.*?) lr=')


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf: stop without saving."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a folder made read-only while training).
    str: `<folder>: writing checkpoint <name> failed [at <file>] (<reason>)`; the script adds
    what is kept and what to do. TF's error was a traceback whose hint spoke of tensors allocated
    "when OOM happens"."""

    def __init__(self, prefix, step, reason, file=None):
        name = os.path.basename(prefix) + ('' if step is None else f'-{step}')
        at = f' at {file}' if file else ''
        super().__init__(
            f'{os.path.dirname(prefix)}: writing checkpoint {name} failed{at} ({reason})'
        )


# The suffix of the temporary file TF writes a checkpoint's file under (SaveV2's, file_io's
# atomic writes of the .meta and the state file).
_TEMPORARY_SUFFIX = re.compile(r'\.(tempstate\d+|tmp[0-9a-f]+)$')


# What a save in a cluster raises when a parameter server goes away (or the session is being
# closed): MonitoredSession recovers from the first two by a new session restoring the last
# checkpoint, which a CheckpointWriteError would end.
_SESSION_ERRORS = (tf.errors.AbortedError, tf.errors.UnavailableError, tf.errors.CancelledError)


class Saver(v1.train.Saver):
    """TF's Saver whose failure to write a checkpoint is a `CheckpointWriteError` naming the
    file, without its temporary suffix: the .meta, written last, may fail after the weights.
    The session's own errors (_SESSION_ERRORS) pass unchanged."""

    def save(self, sess, save_path, global_step=None, *args, **kwargs):
        try:
            return super().save(sess, save_path, global_step, *args, **kwargs)
        except _SESSION_ERRORS:
            raise
        except tf.errors.OpError as err:
            why, file = tf_errors.reason(err), None
            # TF's reason names the file it was writing: '<temporary file>; <why>'.
            path, sep, rest = why.partition('; ')
            if sep and path.startswith(os.path.join(os.path.dirname(save_path), '')):
                why, file = rest, _TEMPORARY_SUFFIX.sub('', os.path.basename(path))
            raise CheckpointWriteError(save_path, global_step, why, file) from None


class FiniteCheckListener(v1.train.CheckpointSaverListener):
    """Refuses to save (and stops training) when a variable is not finite."""

    def __init__(self, all_finite):
        self._all_finite = all_finite

    def before_save(self, session, global_step_value):
        if not session.run(self._all_finite):
            raise NonFiniteError(f'non-finite weights at step {global_step_value}')


class CheckpointSaverHook(v1.train.CheckpointSaverHook):
    """TF's CheckpointSaverHook without the `graph.pbtxt` it writes at every start: that text
    copy of the training graph (6.5 MB for MobileNet-SSD300 at depth 0.25) took 1.9 s of each
    start and resume on 2 cores, 13 % of a short run. The graph stays in every checkpoint's
    .meta and, for TensorBoard's graph view, in the event file. `after_create_session` is TF
    2.21's less that file and less its graph and meta graph events: the event file's writer
    (SummaryWriterCache's, made by `begin`) wrote both already, so each event file held two."""

    def after_create_session(self, session, coord):
        global_step = session.run(self._global_step_tensor)
        # The checkpoint of the state at the start (global_step).
        self._save(session, global_step)
        self._timer.update_last_triggered_step(global_step)


# What TF's session and CheckpointSaverHook log that says nothing to a person reading the run
# (`CheckpointLogListener` says a save in one line instead of TF's three). Regular expressions
# matched at the start of the message; "Restoring parameters from" stays.
TF_CHATTER = (
    r'Calling checkpoint listeners (before|after) saving checkpoint',
    r'Saving checkpoints for',
    r'Create CheckpointSaverHook',
    r'Graph was finalized',
    r'(Done r|R)unning local_init_op',
    r'From \S+: get_checkpoint_mtimes',
    r'From \S+: remove_checkpoint',  # v1 deprecation notice when max_to_keep deletes one
    r'Restoring parameters from ',  # the resume and fine-tuning lines name the checkpoint
)


class SummarySaverHook(v1.train.SummarySaverHook):
    """TF's SummarySaverHook that also writes the summaries of `last_step` (the run's last:
    --max_number_of_steps; None: no limit). TF's writes them every `save_secs` only, so the
    curves ended up to that long before the run did (a 6-step run had steps 1 and 3)."""

    def __init__(self, last_step, **kwargs):
        super().__init__(**kwargs)
        self._last_step = last_step

    def before_run(self, run_context):
        # `_next_step`: the global step this run makes (None for the first, always written).
        if self._last_step and self._next_step is not None and self._next_step >= self._last_step:
            self._timer.reset()  # the timer then triggers for this run
        return super().before_run(run_context)


class CheckpointLogListener(v1.train.CheckpointSaverListener):
    """One log line per checkpoint written, instead of TF's three (which it hides). The first,
    TF's save as the session starts, says it is the starting point: a resumed run's "checkpoint
    saved: model.ckpt-N" of its resumed step read as if step N had been trained again."""

    def __init__(self, checkpoint_prefix):
        self._prefix = checkpoint_prefix
        self._saved = False
        logs.drop_tensorflow_messages(*TF_CHATTER)

    def after_save(self, session, global_step_value):
        start = '' if self._saved else ' (the starting point, before the first step)'
        self._saved = True
        logging.info('checkpoint saved: %s-%d%s', self._prefix, global_step_value, start)


class FirstSavePastListener(v1.train.CheckpointSaverListener):
    """Calls `action()` once, after the first checkpoint of a step past `step` is written: what a
    resumed run records once it has trained (a resume aborted before then leaves no trace)."""

    def __init__(self, step, action):
        self._step, self._action = step, action

    def after_save(self, session, global_step_value):
        if self._action is not None and global_step_value > self._step:
            action, self._action = self._action, None
            action()


class RateEstimator:
    """Steps per second for an ETA that holds still on a machine whose speed varies.

    The rate is measured over the most recent `max(min_window_secs, window_fraction * elapsed)`
    seconds: long enough to average over the alternating speeds of a shared machine, short
    enough to follow a lasting change. Elapsed time starts at the first `update` (call it after
    the first step, which carries the graph's one-off start-up cost).
    """

    def __init__(self, clock=time.monotonic, window_fraction=0.25, min_window_secs=60.0):
        self._clock = clock
        self.window_fraction = window_fraction
        self.min_window_secs = min_window_secs
        self._samples = collections.deque()  # (time, step), oldest first
        self._start = None

    def update(self, step):
        now = self._clock()
        if self._start is None:
            self._start = now
        self._samples.append((now, step))
        window = self.window_secs(now)
        # Keep one sample at or before the window's start, so the window is always covered.
        while len(self._samples) > 2 and self._samples[1][0] <= now - window:
            self._samples.popleft()

    def window_secs(self, now=None):
        now = self._clock() if now is None else now
        elapsed = 0.0 if self._start is None else now - self._start
        return max(self.min_window_secs, self.window_fraction * elapsed)

    def steps_per_sec(self):
        """The smoothed rate, or None before two updates."""
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def eta_secs(self, step, last_step):
        """Seconds until `last_step` at the smoothed rate, or None."""
        rate = self.steps_per_sec()
        if not rate or not last_step:
            return None
        return max(last_step - step, 0) / rate


def format_duration(seconds):
    """`H:MM:SS` (hours unbounded), e.g. 3725 -> '1:02:05'."""
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# The TensorBoard scalars of the step lines' rate: steps and images per second.
RATE_TAGS = ('global_step/sec', 'images/sec')


class LoggingHook(v1.train.SessionRunHook):
    """Every `every_n` steps logs the step (of `last_step`), the epoch, the loss terms averaged
    over those steps, the learning rate, images/s and the ETA (see the module docstring).

    `step` is the global step after this process' latest run. Alone, it is read at start and
    then counted; in a cluster, where other workers move it too, it is `tensors['step_after']`,
    read once the run's step is done. With `summary_dir` (a lone process' train_dir), each line's
    rate is written there too (RATE_TAGS); a cluster worker's rate is its own, not the run's.
    """

    def __init__(
        self,
        tensors,
        every_n,
        images_per_step,
        last_step,
        count_locally=True,
        num_examples=None,
        clock=time.monotonic,
        epoch_origin=None,
        summary_dir=None,
    ):
        self._tensors = tensors
        self._summary_dir = summary_dir
        self._writer = None
        # 'global_step' is read at the start only: read in parallel with a run's step, it may
        # lag. 'step_after' (read once the step is done) only where the step is not counted.
        unused = ('global_step',) + (('step_after',) if count_locally else ())
        self._fetches = {k: v for k, v in tensors.items() if k not in unused}
        self._every_n = every_n
        self._images_per_step = images_per_step
        self._last_step = last_step
        self._count_locally = count_locally
        self._num_examples = num_examples
        # (step, epochs done at it): a resumed run's earlier steps may have had another batch.
        self._epoch_origin = epoch_origin or (0, 0.0)
        self._clock = clock
        self.step = None
        self.start_step = None
        self.smoothed = None  # the latest line's mean loss terms
        self.smoothed_steps = 0  # the steps `smoothed` is the mean of
        self.rate = RateEstimator(clock)

    def begin(self):
        if self._summary_dir:  # the writer SummarySaverHook writes (and flushes at the end)
            self._writer = v1.summary.FileWriterCache.get(self._summary_dir)

    def after_create_session(self, session, coord):
        self.step = self.start_step = int(session.run(self._tensors['global_step']))
        self._local_steps = 0
        self._sums, self._count = collections.defaultdict(float), 0
        self._start_time = self._clock()
        self._end_time = None

    def before_run(self, run_context):
        return v1.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        values = run_values.results
        self._local_steps += 1
        self.step = self.step + 1 if self._count_locally else int(values['step_after'])
        self._end_time = self._clock()
        self.rate.update(self._local_steps)
        for name, value in values['losses'].items():
            self._sums[name] += float(value)
        self._count += 1
        if (self.step if self._count_locally else self._local_steps) % self._every_n:
            return
        logging.info('%s', self.line(values['learning_rate']))
        rate = self.rate.steps_per_sec()
        if self._writer is not None and rate:
            steps, images = RATE_TAGS
            self._writer.add_summary(
                v1.Summary(
                    value=[
                        v1.Summary.Value(tag=steps, simple_value=rate),
                        v1.Summary.Value(tag=images, simple_value=rate * self._images_per_step),
                    ]
                ),
                self.step,
            )

    def line(self, learning_rate):
        """The log line of the steps accumulated since the previous one (and resets them)."""
        self.smoothed = {k: v / self._count for k, v in self._sums.items()}
        window = self.smoothed_steps = self._count
        self._sums, self._count = collections.defaultdict(float), 0
        order = sorted(self.smoothed, key=lambda k: (k != 'total', k == 'regularization', k))
        losses = ' '.join(f'{k}={self.smoothed[k]:.4f}' for k in order)
        head = f'step {self.step}' + (f'/{self._last_step}' if self._last_step else '')
        if self._num_examples:
            origin, epochs = self._epoch_origin
            epochs += (self.step - origin) * self._images_per_step / self._num_examples
            head += f' (epoch {epochs:.1f})'
        text = (
            f'{head}: loss over {window} step{"s" if window != 1 else ""} {losses} '
            f'lr={learning_rate:.4g}'
        )
        rate = self.rate.steps_per_sec()
        if rate:
            text += f' {rate * self._images_per_step:.1f} images/s'
            eta = self.rate.eta_secs(self.step, self._last_step)
            if eta is not None:
                text += f' ETA {format_duration(eta)}'
        return text

    def summary(self):
        """What the run did: steps, wall seconds, mean images/s, the last smoothed loss terms
        (the mean over the steps since the last line, or else that line's) and their step count."""
        steps = self._local_steps
        seconds = (self._end_time or self._clock()) - self._start_time
        if self._count:  # steps after the last line
            self.smoothed = {k: v / self._count for k, v in self._sums.items()}
            self.smoothed_steps = self._count
        return {
            'steps': steps,
            'first_step': self.start_step,
            'last_step': self.step,
            'seconds': seconds,
            'images_per_sec': steps * self._images_per_step / seconds if seconds > 0 else None,
            'loss': self.smoothed,
            'loss_steps': self.smoothed_steps,
        }


def _optimizer_text(settings):
    """The optimizer with the settings that shape its steps: 'adam (epsilon 1e-08)'. The older
    port's Adam epsilon 1.0 all but stopped it; with 1e-8 the first steps are full-size, so its
    users' loss curves look different: the line says which."""
    name = settings.optimizer
    shown = {
        'adam': [('epsilon', settings.opt_epsilon)],
        'rmsprop': [
            ('epsilon', settings.opt_epsilon),
            ('decay', settings.rmsprop_decay),
            ('momentum', settings.rmsprop_momentum),
        ],
        'adadelta': [('epsilon', settings.opt_epsilon), ('rho', settings.adadelta_rho)],
        'momentum': [('momentum', settings.momentum)],
    }.get(name)
    return f'{name} ({", ".join(f"{k} {v:g}" for k, v in shown)})' if shown else name


def start_lines(
    card, card_path, dataset, settings, num_parameters, resume_step, resume_text, loss_terms
):
    """The lines that open a training log: what is trained on what, how, and where it goes
    (`card_path`: the model card's file, or how a new one is named; `num_parameters`: the
    parameters trained and all the model's trainable ones, see trainer.parameter_counts;
    `resume_step`, `resume_text`: a resume's step and line, see trainer.resume_line, or None)."""
    images = settings.batch_size * settings.num_clones
    steps_per_epoch = dataset.num_samples / images if images else 0
    total = settings.max_number_of_steps
    decay = settings.learning_rate_decay_type
    # Piecewise --values give every rate: --learning_rate, not used, is not stated.
    initial = (
        f' {settings.learning_rate:g}'
        if optimization.reads_learning_rate(decay, settings.values)
        else ''
    )
    schedule = f'{_optimizer_text(settings)}, learning rate{initial} {decay}'
    if decay in ('exponential', 'polynomial'):  # TF-Slim's: a length in epochs, not the run's
        steps = optimization.decay_steps_per_epochs(
            dataset.num_samples, settings.images_per_step, settings.num_epochs_per_decay
        )
        span = f'{steps} steps (--num_epochs_per_decay={settings.num_epochs_per_decay:g})'
        if decay == 'exponential':
            schedule += f' x{settings.learning_rate_decay_factor:g} every {span}'
        else:
            schedule += f' to {settings.end_learning_rate:g} over {span}, then constant'
    if decay == 'cosine':
        schedule += f' to {settings.end_learning_rate:g} over the run'
    if settings.learning_rate_decay_type == 'piecewise' and settings.boundaries:
        rates = optimization.piecewise_values(
            settings.learning_rate,
            settings.boundaries,
            settings.values,
            settings.learning_rate_decay_factor,
        )
        spans = ', '.join(f'{r:g} until step {b}' for r, b in zip(rates, settings.boundaries))
        schedule += f': {spans}, then {rates[-1]:g}'
    if settings.warmup_steps:
        schedule += f', {settings.warmup_steps} warm-up steps'
    schedule += f', weight decay {settings.weight_decay:g}'
    if total:
        # Resumed: the steps so far may have had another batch; only those to go are this run's.
        left = total - (resume_step or 0)
        schedule += f'; {total} steps'
        if resume_step:
            schedule += f', {left} to go'
        if steps_per_epoch:
            schedule += f' = {left / steps_per_epoch:.1f} epochs'
            if resume_step:
                schedule += ' at this batch'
    else:
        schedule += '; no step limit (--max_number_of_steps)'
    saves = (
        f'every {settings.save_interval_steps} steps'
        if settings.save_interval_steps
        else f'every {settings.save_interval_secs} s'
    )
    terms = ' + '.join(t for t in loss_terms if t != 'total')
    trained, trainable = num_parameters
    parameters = f'{trained:,} trainable parameters'
    if trained != trainable:
        parameters = (
            f'{trained:,} of its {trainable:,} trainable parameters trained '
            f'(--trainable_scopes={settings.trainable_scopes})'
        )
    return [
        f'model: {card_lib.describe(card)}; {parameters}; card {card_path}',
        f'data: {dataset.name} split {dataset.split_name} in {dataset.dataset_dir}, '
        f'{dataset.num_samples} examples; batch {settings.batch_size}'
        + (f' x {settings.num_clones} clones' if settings.num_clones > 1 else '')
        + f', {steps_per_epoch:.1f} steps per epoch',
        f'schedule: {schedule}',
        f'output: {settings.train_dir} (checkpoints {saves}, {settings.max_to_keep} kept; '
        f'model card model.json)',
        (
            resume_text
            if resume_text
            else 'starting a new run'
            + (f' from {settings.checkpoint_path}' if settings.checkpoint_path else '')
        ),
        f'log: every {settings.log_every_n_steps} step'
        f'{"s" if settings.log_every_n_steps != 1 else ""}; each loss term is the mean over '
        f'those steps; total = {terms} (weight decay); images/s and ETA from the rate over the last '
        f'quarter of the run so far (at least a minute)',
    ]


def end_line(summary, train_dir, checkpoint, card_file):
    """The line that closes a training log; `checkpoint`: the latest one's name, None for a
    worker of a cluster other than the chief (which writes them, maybe after this worker ends)."""
    loss = summary['loss'] or {}
    mean = summary['images_per_sec']
    return (
        f'training finished: {summary["steps"]} step{"s" if summary["steps"] != 1 else ""} (to '
        f'step {summary["last_step"]}) in '
        f'{format_duration(summary["seconds"])}'
        + (f', {mean:.1f} images/s on average' if mean else '')
        + (
            f', final loss {loss["total"]:.4f} (mean over the last {summary["loss_steps"]} '
            f'step{"s" if summary["loss_steps"] != 1 else ""})'
            if 'total' in loss
            else ''
        )
        + (
            f'; checkpoints in {train_dir} (latest {checkpoint}), model card {card_file}'
            if checkpoint
            else '; checkpoints and model card: the chief\'s'
        )
    )
