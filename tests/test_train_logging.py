"""What a person reads of a training run: the step line (parsed back by `hooks.LOG_LINE`), the
ETA on a machine whose speed alternates, the start and end summaries, one line per checkpoint."""

import dataclasses
import types

import pytest

from training import hooks


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _step_times(total, fast=0.1, slow=0.5, block=25):
    """Step durations alternating between two speeds in blocks (a shared, loaded machine)."""
    return [slow if (i // block) % 2 else fast for i in range(total)]


def _etas(estimator_steps, times, every_n, make_estimate):
    clock = FakeClock()
    estimate = make_estimate(clock)
    results = []
    for step, seconds in enumerate(times, 1):
        clock.now += seconds
        eta = estimate(step)
        if step % every_n == 0 and eta is not None:
            results.append((step, eta, sum(times[step:])))
    return results


def test_eta_within_20_percent_when_step_time_alternates():
    total, every_n = 2000, 10
    times = _step_times(total)

    def smoothed(clock):
        rate = hooks.RateEstimator(clock)

        def estimate(step):
            rate.update(step)
            return rate.eta_secs(step, total)

        return estimate

    checked = [
        (s, eta, true)
        for s, eta, true in _etas(total, times, every_n, smoothed)
        if 0.1 * total <= s <= 0.8 * total
    ]  # the ETA of the run's bulk
    assert len(checked) > 100
    for step, eta, true in checked:
        assert abs(eta - true) <= 0.2 * true, (step, eta, true)

    # What the log showed before: the rate of the last `every_n` steps. It swings far more.
    def last_interval(clock):
        marks = {}

        def estimate(step):
            marks[step] = clock()
            if step - every_n not in marks:
                return None
            return (total - step) * (marks[step] - marks[step - every_n]) / every_n

        return estimate

    naive = [
        (s, eta, true)
        for s, eta, true in _etas(total, times, every_n, last_interval)
        if 0.1 * total <= s <= 0.8 * total
    ]
    assert max(abs(eta - true) / true for _, eta, true in naive) > 0.5


def test_rate_window_follows_a_lasting_change():
    clock = FakeClock()
    rate = hooks.RateEstimator(clock)
    for step in range(1, 1001):
        clock.now += 0.1
        rate.update(step)
    for step in range(1001, 3001):  # the machine becomes 4x slower for good
        clock.now += 0.4
        rate.update(step)
    assert rate.steps_per_sec() == pytest.approx(2.5, rel=0.05)


def test_format_duration():
    assert hooks.format_duration(0) == '0:00:00'
    assert hooks.format_duration(3725) == '1:02:05'
    assert hooks.format_duration(100 * 3600 + 59.6) == '100:01:00'


def _run_hook(
    every_n,
    losses_per_step,
    last_step=8,
    start_step=0,
    num_examples=16,
    epoch_origin=None,
    steps_after=None,
):
    """`steps_after`: a cluster worker's global step after each of its runs (other workers move
    it too); None: a lone process, which counts its steps."""
    clock = FakeClock()
    hook = hooks.LoggingHook(
        {'global_step': 'gs'},
        every_n,
        images_per_step=4,
        last_step=last_step,
        count_locally=steps_after is None,
        num_examples=num_examples,
        clock=clock,
        epoch_origin=epoch_origin,
    )
    session = types.SimpleNamespace(run=lambda tensor: start_step)
    hook.after_create_session(session, None)
    lines = []
    original = hooks.logging.info
    hooks.logging.info = lambda fmt, *args: lines.append(fmt % args)
    try:
        for i, losses in enumerate(losses_per_step):
            clock.now += 2.0
            results = {'global_step': None, 'learning_rate': 0.001, 'losses': losses}
            if steps_after is not None:
                results['step_after'] = steps_after[i]
            hook.after_run(None, types.SimpleNamespace(results=results))
    finally:
        hooks.logging.info = original
    return hook, lines


def test_epochs_of_a_resume_with_another_batch_go_on_from_the_recorded_ones():
    """Steps 0-300 at batch 8, then 300-310 at batch 4 on 48 examples: epoch 50 + 10 * 4 / 48.
    The line said step * 4 / 48 = 25.8 (going backwards from 50)."""
    from model import card as card_lib
    from training import trainer

    card = card_lib.from_registry('ssd_300_mobilenet', 3).replace(
        provenance={
            'settings': {'batch_size': 8, 'num_clones': 1},
            'dataset': {'num_examples': 48},
            'resumed': [
                {'step': 120, 'changes': {'learning_rate': [0.1, 0.01]}},
                {'step': 300, 'changes': {'batch_size': [8, 4]}},
            ],
        }
    )
    assert trainer.epochs_at(card, 300) == pytest.approx(50.0)
    assert trainer.epochs_at(card, 120) == pytest.approx(20.0)
    assert trainer.epochs_at(card.replace(provenance={}), 300) is None
    broken = dict(card.provenance, resumed=[{'step': 'x', 'changes': {}}])
    assert trainer.epochs_at(card.replace(provenance=broken), 300) is None
    # A resume on other data (480 examples from step 100) holds for the resumes after it that
    # name none: 100 * 8 / 48 + 200 * 8 / 480 (the first run's data was taken again: 35.0).
    # An entry that is not a record is skipped, as the resume record skips it.
    other_data = dict(
        card.provenance,
        resumed=[
            {'step': 100, 'changes': {}, 'dataset': {'num_examples': 480}},
            'not a record',
            {'step': 200, 'changes': {'learning_rate': [0.1, 0.01]}},
        ],
    )
    assert trainer.epochs_at(card.replace(provenance=other_data), 300) == pytest.approx(20.0)
    steps = [{'total': 1.0}] * 10
    _, lines = _run_hook(
        10, steps, last_step=400, start_step=300, num_examples=48, epoch_origin=(300, 50.0)
    )
    assert lines[0].startswith('step 310/400 (epoch 50.8): ')


def test_step_line_smoothed_terms_and_parse():
    steps = [
        {'total': 4.0 - i, 'localization': 1.0, 'cross_entropy_pos': 2.0 - i, 'regularization': 0.5}
        for i in range(4)
    ]
    hook, lines = _run_hook(2, steps)
    assert len(lines) == 2
    assert lines[0].startswith('step 2/8 (epoch 0.5): loss over 2 steps total=3.5000 ')
    assert 'regularization=0.5000 lr=0.001' in lines[0]
    assert 'images/s ETA 0:00:' in lines[1]
    parsed = [
        (int(step), dict(t.split('=') for t in terms.split()))
        for step, terms in (hooks.LOG_LINE.search(line).groups() for line in lines)
    ]
    assert [p[0] for p in parsed] == [2, 4]
    assert float(parsed[1][1]['total']) == pytest.approx(1.5)  # mean of steps 3 and 4
    assert float(parsed[1][1]['cross_entropy_pos']) == pytest.approx(-0.5)
    summary = hook.summary()
    assert (summary['steps'], summary['last_step'], summary['seconds']) == (4, 4, 8.0)
    assert summary['images_per_sec'] == pytest.approx(2.0)
    end = hooks.end_line(summary, 'logs/x', 'model.ckpt-4', 'logs/x/model.json')
    assert end.startswith('training finished: 4 steps (to step 4) in 0:00:08, 2.0 images/s')
    assert 'final loss 1.5000 (mean over the last 2 steps)' in end and 'logs/x/model.json' in end
    # Steps after the last line: their mean, said as such (it said "the last logged steps").
    hook, lines = _run_hook(2, steps[:3])
    end = hooks.end_line(hook.summary(), 'logs/x', 'model.ckpt-3', 'logs/x/model.json')
    assert len(lines) == 1 and 'final loss 2.0000 (mean over the last 1 step)' in end
    one = hooks.end_line(dict(summary, steps=1), 'logs/x', 'model.ckpt-4', 'logs/x/model.json')
    assert one.startswith('training finished: 1 step (to step 4) in ')  # was "1 steps"


def test_resumed_run_counts_from_the_checkpoint_step():
    _, lines = _run_hook(1, [{'total': 1.0}] * 2, last_step=10, start_step=6)
    assert lines[0].startswith('step 7/10 ') and lines[1].startswith('step 8/10 ')
    # Lines fall on multiples of every_n of the global step: resumed at 3, the first is at 4
    # and means its 1 step.
    _, lines = _run_hook(2, [{'total': t} for t in (1.0, 3.0, 5.0)], last_step=10, start_step=3)
    assert [line.split(' lr=')[0] for line in lines] == [
        'step 4/10 (epoch 1.0): loss over 1 step total=1.0000',
        'step 6/10 (epoch 1.5): loss over 2 steps total=4.0000',
    ]


def test_a_cluster_worker_logs_the_global_step_every_n_of_its_own_steps():
    _, lines = _run_hook(2, [{'total': 1.0}] * 4, last_step=20, steps_after=[3, 7, 9, 14])
    assert [line.split(':')[0] for line in lines] == [
        'step 7/20 (epoch 1.8)',
        'step 14/20 (epoch 3.5)',
    ]


def test_images_per_sec_and_eta_values():
    """2 s per step at 4 images per step: 0.5 steps/s, 2.0 images/s; the ETA is the steps
    left (8 - step) over that rate."""
    _, lines = _run_hook(2, [{'total': 1.0}] * 4)
    assert lines[0].endswith(' 2.0 images/s ETA 0:00:12')
    assert lines[1].endswith(' 2.0 images/s ETA 0:00:08')


def test_rate_window_is_a_quarter_of_the_elapsed_time_at_least_a_minute():
    clock = FakeClock()
    rate = hooks.RateEstimator(clock)
    rate.update(1)
    clock.now += 200.0
    assert rate.window_secs() == 60.0
    clock.now += 800.0
    assert rate.window_secs() == 250.0


def test_start_lines_say_what_how_and_where():
    from model import card as card_lib

    card = card_lib.from_registry('ssd_300_mobilenet', class_names=('circle', 'square'))
    dataset = types.SimpleNamespace(
        name='custom', split_name='train', dataset_dir='rec', num_samples=80
    )
    from training import trainer

    settings = trainer.TrainSettings(
        train_dir='logs/x',
        batch_size=16,
        max_number_of_steps=100,
        learning_rate_decay_type='cosine',
        warmup_steps=10,
        save_interval_steps=50,
    )
    lines = hooks.start_lines(
        card,
        'logs/x/model.json',
        dataset,
        settings,
        (123456, 123456),
        50,
        'resuming from logs/x/model.ckpt-50 (step 50, found in --train_dir)',
        ['total', 'cross_entropy_neg', 'localization', 'regularization'],
    )
    text = '\n'.join(lines)
    for part in (
        'model: ssd_300_mobilenet, 2 classes (circle, square), input 300x300, depth multiplier '
        '1, anchors mobilenet_ssd; 123,456 trainable parameters; card logs/x/model.json',
        'custom split train in rec, 80 examples; batch 16, 5.0 steps per epoch',
        'schedule: adam (epsilon 1e-08), learning rate 0.001 cosine to 0.0001',
        '10 warm-up steps',
        '100 steps, 50 to go = 10.0 epochs at this batch',
        'output: logs/x (checkpoints every 50 steps',
        'resuming from logs/x/model.ckpt-50 (step 50, found in --train_dir)',
        'total = cross_entropy_neg + localization + regularization',
    ):
        assert part in text, part
    fresh = hooks.start_lines(card, 'new', dataset, settings, (1, 1), None, None, ['total'])
    assert '; 100 steps = 20.0 epochs' in '\n'.join(fresh)
    # Each clone takes a batch: 80 examples / (16 x 2) a step.
    clones = dataclasses.replace(settings, num_clones=2)
    text = '\n'.join(hooks.start_lines(card, 'new', dataset, clones, (1, 1), None, None, []))
    assert 'batch 16 x 2 clones, 2.5 steps per epoch' in text and '100 steps = 40.0 epochs' in text
    # Polynomial and exponential decays span --num_epochs_per_decay (TF-Slim's), not the run: a
    # walkthrough read "polynomial to 0.0001" as spanning it. 80 examples / 16 x 2 epochs.
    # Piecewise: the rates, --values' or lr x --learning_rate_decay_factor^i (0.94 by default,
    # not Caffe's x0.1: the line said only "(boundaries 80,100)").
    piecewise = dict(learning_rate_decay_type='piecewise', boundaries=('80', '100'))
    for values, part in (
        (
            ('0.001', '0.0001', '0.00001'),
            'piecewise: 0.001 until step 80, 0.0001 until step 100, then 1e-05,',
        ),
        ((), 'piecewise: 0.001 until step 80, 0.00094 until step 100, then 0.0008836,'),
    ):
        other = dataclasses.replace(settings, values=values, **piecewise)
        text = '\n'.join(hooks.start_lines(card, 'new', dataset, other, (1, 1), None, None, []))
        assert part in text, text
    # The optimizer's settings that shape its steps (the older port's Adam epsilon was 1.0).
    for changes, part in (
        (dict(optimizer='adam', opt_epsilon=1.0), 'schedule: adam (epsilon 1), '),
        (
            dict(optimizer='rmsprop', rmsprop_decay=0.8, rmsprop_momentum=0.7),
            'schedule: rmsprop (epsilon 1e-08, decay 0.8, momentum 0.7),',
        ),
        (dict(optimizer='momentum', momentum=0.8), 'schedule: momentum (momentum 0.8), '),
        (dict(optimizer='sgd'), 'schedule: sgd, learning rate'),
    ):
        other = dataclasses.replace(settings, **changes)
        text = '\n'.join(hooks.start_lines(card, 'new', dataset, other, (1, 1), None, None, []))
        assert part in text, text
    for decay, part in (
        ('polynomial', 'polynomial to 0.0001 over 10 steps (--num_epochs_per_decay=2), then '),
        ('exponential', 'exponential x0.94 every 10 steps (--num_epochs_per_decay=2)'),
    ):
        other = dataclasses.replace(settings, learning_rate_decay_type=decay)
        assert part in '\n'.join(
            hooks.start_lines(card, 'new', dataset, other, (1, 1), None, None, [])
        )


def test_the_first_checkpoint_line_says_it_is_the_starting_point(monkeypatch):
    """TF saves the resumed step again as the session starts: its bare "checkpoint saved:
    model.ckpt-20" read as if step 20 had been trained again."""
    lines = []
    monkeypatch.setattr(hooks.logging, 'info', lambda fmt, *args: lines.append(fmt % args))
    listener = hooks.CheckpointLogListener('logs/x/model.ckpt')
    listener.after_save(None, 20)
    listener.after_save(None, 30)
    assert lines == [
        'checkpoint saved: logs/x/model.ckpt-20 (the starting point, before the first step)',
        'checkpoint saved: logs/x/model.ckpt-30',
    ]


def test_fine_tuning_hints_are_for_runs_without_the_flags_they_name(tmp_path):
    """'restore without them (--checkpoint_exclude_scopes or --exclude_mismatched_vars)' was
    logged to runs that passed those flags."""
    from model import card as card_lib
    from training import trainer

    import tensorflow as tf

    card_lib.write(
        str(tmp_path / 'model.json'),
        card_lib.from_registry('ssd_300_mobilenet', class_names=('a', 'b', 'c', 'd', 'e')),
    )
    with tf.Graph().as_default():
        tf.compat.v1.get_variable('w', initializer=1.0)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'), global_step=1)
    dataset = types.SimpleNamespace(
        name='custom',
        split_name='train',
        dataset_dir='rec',
        num_samples=8,
        class_names=['x', 'y'],
        num_classes=3,
        metadata={},
    )
    for flags, hinted in (
        ({}, True),
        ({'exclude_mismatched_vars': True}, False),
        ({'checkpoint_exclude_scopes': 'ssd_300_mobilenet/conv11_mbox_conf'}, False),
    ):
        lines = []
        settings = trainer.TrainSettings(
            train_dir=str(tmp_path / 'new'), checkpoint_path=str(tmp_path), **flags
        )
        card = trainer._new_card(settings, dataset, lines.append)
        assert card.num_classes == 3
        assert any(
            'its class heads do not fit; restore without them' in line for line in lines
        ) == (hinted), (flags, lines)
        # The change itself is logged either way.
        assert (
            any('its class heads do not fit; ' in line and 'start anew' in line for line in lines)
            != hinted
        ), (flags, lines)


def test_parameter_counts_are_those_trained_and_all_trainable():
    """The start line counted every trainable variable whatever --trainable_scopes said."""
    import tensorflow as tf

    from model import card as card_lib
    from training import trainer

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        with v1.variable_scope('net/head'):
            v1.get_variable('w', shape=[3, 3, 8, 4])
            v1.get_variable('b', shape=[4])
        with v1.variable_scope('net/base'):
            v1.get_variable('w', shape=[5, 7])
        v1.get_variable('not_trained', shape=[100], trainable=False)
        settings = trainer.TrainSettings(trainable_scopes='net/head')
        assert trainer.parameter_counts(settings) == (3 * 3 * 8 * 4 + 4, 3 * 3 * 8 * 4 + 4 + 35)
        assert trainer.parameter_counts(trainer.TrainSettings()) == (327, 327)
        # From scratch, net/base is neither restored nor trained: it stays as initialised.
        assert trainer.frozen_start_warning(settings, None) == (
            '--trainable_scopes leaves 1 variable(s) at their initial values to the end (no '
            '--checkpoint_path, and they are not trained): net/base; add their scopes to '
            '--trainable_scopes.'
        )
        assert trainer.frozen_start_warning(trainer.TrainSettings(), None) is None
    card = card_lib.from_registry('ssd_300_mobilenet')
    dataset = types.SimpleNamespace(name='voc', split_name='t', dataset_dir='r', num_samples=8)
    text = '\n'.join(hooks.start_lines(card, 'new', dataset, settings, (292, 327), None, None, []))
    assert '; 292 of its 327 trainable parameters trained (--trainable_scopes=net/head);' in text
