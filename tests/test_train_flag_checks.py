"""Training flags that did nothing, or said what the run did not do, found by a research user:

- --learning_rate with piecewise --values: the start line said "learning rate 0.5", the run used
  --values' rates and the card recorded 0.5;
- optimizer and decay settings the chosen --optimizer / --learning_rate_decay_type never reads,
  --negative_ratio with focal loss, --batch_norm_decay for the VGG nets (no batch norm): accepted
  silently;
- --batch_norm_decay took effect, but the card said the default 0.997;
- focal loss weighed the positives 0.25 with no flag to change it (--focal_loss_alpha now);
- TensorBoard: the last step's summaries were never written, and each event file held the graph
  and the meta graph twice;
- a fine-tuning with another --anchor_sizes switched the anchors without a log line.

The script's flags are parsed in a child process (`run_python`), never imported here.
"""

import dataclasses
import glob
import json
import os
import re
import types

import pytest
import tensorflow as tf

from model import card as card_lib
from tests.conftest import ROOT
from tests.conftest import TINY_TRAIN_FLAGS
from tests.conftest import run_python
from tests.conftest import run_script
from tests.conftest import synthetic_voc_records
from training import hooks
from training import model_deploy
from training import trainer

v1 = tf.compat.v1

# Command line -> absl's whole error.
REFUSED = {
    '--learning_rate=0.5 --learning_rate_decay_type=piecewise --boundaries=2,4 '
    '--values=0.01,0.001,0.0001': (
        "flags values=['0.01', '0.001', '0.0001'], learning_rate=0.5: --learning_rate is not "
        'used with --values, which give every rate of the piecewise schedule: leave '
        '--learning_rate out, or drop --values for the rates --learning_rate x '
        '--learning_rate_decay_factor^i.'
    ),
    '--learning_rate_decay_type=piecewise --boundaries=2 --values=0.01,0.001 '
    '--learning_rate_decay_factor=0.5': (
        "flags values=['0.01', '0.001'], learning_rate_decay_factor=0.5: "
        '--learning_rate_decay_factor is not used with --values, which give every rate of the '
        'piecewise schedule: leave --learning_rate_decay_factor out, or drop --values for the '
        'rates --learning_rate x --learning_rate_decay_factor^i.'
    ),
    '--optimizer=adam --momentum=0.5': (
        'flags optimizer=adam, momentum=0.5: --momentum is read only by --optimizer=momentum; '
        "this run's is --optimizer=adam: leave --momentum out, or change --optimizer."
    ),
    '--rmsprop_decay=0.5': (
        'flags optimizer=adam, rmsprop_decay=0.5: --rmsprop_decay is read only by '
        "--optimizer=rmsprop; this run's is --optimizer=adam: leave --rmsprop_decay out, or "
        'change --optimizer.'
    ),
    '--optimizer=sgd --opt_epsilon=1': (
        'flags optimizer=sgd, opt_epsilon=1.0: --opt_epsilon is read only by '
        "--optimizer=adadelta, adam or rmsprop; this run's is --optimizer=sgd: leave "
        '--opt_epsilon out, or change --optimizer.'
    ),
    '--optimizer=momentum --adam_beta1=0.5': (
        'flags optimizer=momentum, adam_beta1=0.5: --adam_beta1 is read only by '
        "--optimizer=adam; this run's is --optimizer=momentum: leave --adam_beta1 out, or "
        'change --optimizer.'
    ),
    '--learning_rate_decay_type=fixed --end_learning_rate=0.1': (
        'flags learning_rate_decay_type=fixed, end_learning_rate=0.1: --end_learning_rate is '
        "read only by --learning_rate_decay_type=polynomial or cosine; this run's is "
        '--learning_rate_decay_type=fixed: leave --end_learning_rate out, or change '
        '--learning_rate_decay_type.'
    ),
    '--learning_rate_decay_type=fixed --learning_rate_decay_factor=0.5': (
        'flags learning_rate_decay_type=fixed, learning_rate_decay_factor=0.5: '
        '--learning_rate_decay_factor is read only by --learning_rate_decay_type=exponential or '
        "piecewise; this run's is --learning_rate_decay_type=fixed: leave "
        '--learning_rate_decay_factor out, or change --learning_rate_decay_type.'
    ),
    '--learning_rate_decay_type=fixed --num_epochs_per_decay=5': (
        'flags learning_rate_decay_type=fixed, num_epochs_per_decay=5.0: --num_epochs_per_decay '
        "is read only by --learning_rate_decay_type=exponential or polynomial; this run's is "
        '--learning_rate_decay_type=fixed: leave --num_epochs_per_decay out, or change '
        '--learning_rate_decay_type.'
    ),
    '--focal_loss_gamma=2 --negative_ratio=3': (
        'flags focal_loss_gamma=2.0, negative_ratio=3.0: --negative_ratio sets hard-negative '
        'mining, which focal loss (--focal_loss_gamma) does not do: leave --negative_ratio out, '
        'or drop --focal_loss_gamma.'
    ),
    '--focal_loss_alpha=0.5': (
        'flags focal_loss_gamma=None, focal_loss_alpha=0.5: --focal_loss_alpha weighs focal '
        'loss, which --focal_loss_gamma turns on: add --focal_loss_gamma (e.g. 2), or leave '
        '--focal_loss_alpha out.'
    ),
    '--focal_loss_gamma=2 --focal_loss_alpha=1': (
        'flag --focal_loss_alpha=1.0: --focal_loss_alpha must lie in (0, 1) (default 0.25).'
    ),
}
ACCEPTED = [
    '',  # every default, including those of the flags above
    '--learning_rate=0.5 --learning_rate_decay_type=piecewise --boundaries=2,4',
    '--learning_rate_decay_type=piecewise --boundaries=2,4 --learning_rate_decay_factor=0.5',
    '--learning_rate_decay_type=piecewise --boundaries=2,4 --values=0.01,0.001,0.0001',
    '--optimizer=momentum --momentum=0.5',
    '--optimizer=rmsprop --rmsprop_decay=0.5 --rmsprop_momentum=0.5 --opt_epsilon=1',
    '--optimizer=adadelta --adadelta_rho=0.5 --opt_epsilon=1',
    '--adam_beta1=0.5 --adam_beta2=0.5 --opt_epsilon=1',
    '--optimizer=adagrad --adagrad_initial_accumulator_value=0.5',
    '--optimizer=ftrl --ftrl_l1=0.5 --ftrl_l2=0.5 --ftrl_learning_rate_power=-1 '
    '--ftrl_initial_accumulator_value=0.5',
    '--learning_rate_decay_factor=0.5 --num_epochs_per_decay=5',
    '--learning_rate_decay_type=polynomial --num_epochs_per_decay=5 --end_learning_rate=0.1',
    '--learning_rate_decay_type=cosine --end_learning_rate=0.1',
    '--negative_ratio=1',
    '--focal_loss_gamma=0',
    '--focal_loss_gamma=2 --focal_loss_alpha=0.5',
]

CHILD = r'''
import json, sys
from absl import flags
import train_ssd_network  # noqa: F401  (defines the flags)
from tests.flag_parsing import parse_lines

FLAGS = flags.FLAGS
results = parse_lines('train_ssd_network.py', json.loads(sys.argv[1]))
helps = {n: FLAGS[n].help for n in ('match_threshold', 'focal_loss_alpha', 'focal_loss_gamma')}
print('RESULTS ' + json.dumps({'results': results, 'helps': helps}))
'''


def _readme_commands():
    """The README's train_ssd_network.py commands, as their flags (those spelled out in full: not
    those with a shell variable or '...')."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read().replace('\\\n', ' ')
    commands = []
    for line in text.splitlines():
        line = line.split('#')[0].strip()
        if line.startswith('python train_ssd_network.py --') and not re.search(r'\$|\.\.\.', line):
            commands.append(' '.join(line.split()[2:]))
    return commands


@pytest.fixture(scope='module')
def parsed():
    readme = _readme_commands()
    assert len(readme) == 4, readme
    proc = run_python(CHILD, json.dumps(list(REFUSED) + ACCEPTED + readme))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split('RESULTS ', 1)[1])
    return dict(out, readme=readme)


def test_flags_the_run_does_not_read_are_refused(parsed):
    results = parsed['results']
    assert {line: results[line] for line in REFUSED} == REFUSED


def test_flags_the_run_reads_and_the_readme_commands_are_accepted(parsed):
    results = parsed['results']
    assert {line: results[line] for line in ACCEPTED + parsed['readme']} == dict.fromkeys(
        ACCEPTED + parsed['readme']
    )


def test_help_says_the_negatives_threshold_and_the_focal_weights(parsed):
    assert parsed['helps'] == {
        'match_threshold': (
            'IoU for an anchor to match a ground-truth box (a positive). The negatives '
            '(background) are the unmatched anchors below IoU 0.5, fixed: a threshold above 0.5 '
            'leaves the anchors in between ignored by the loss.'
        ),
        'focal_loss_alpha': (
            "Focal loss (--focal_loss_gamma): the weight of the positive anchors' terms; the "
            "background's is 1 - alpha (default RetinaNet's 0.25: positives x0.25, background "
            'x0.75).'
        ),
        'focal_loss_gamma': (
            'If set, softmax focal loss with this gamma instead of hard-negative mining: every '
            'negative anchor counts, weighted as --focal_loss_alpha says (so 0 is a weighted '
            'cross-entropy).'
        ),
    }


def _schedule(settings):
    card = card_lib.from_registry('ssd_300_mobilenet', class_names=('a',))
    dataset = types.SimpleNamespace(name='c', split_name='t', dataset_dir='r', num_samples=8)
    lines = hooks.start_lines(card, 'new', dataset, settings, (1, 1), None, None, ['total'])
    return next(line for line in lines if line.startswith('schedule: '))


def test_start_line_and_record_state_no_rate_the_schedule_does_not_use():
    piecewise = trainer.TrainSettings(
        learning_rate=0.5,
        learning_rate_decay_type='piecewise',
        boundaries=('2', '4'),
        values=('0.01', '0.001', '0.0001'),
        optimizer='sgd',
        weight_decay=0,
    )
    assert _schedule(piecewise) == (
        'schedule: sgd, learning rate piecewise: 0.01 until step 2, 0.001 until step 4, then '
        '0.0001, weight decay 0; no step limit (--max_number_of_steps)'
    )
    assert trainer.recorded_settings(piecewise)['learning_rate'] is None
    # Without --values the rates are --learning_rate x the decay factor^i: stated and recorded.
    factors = dataclasses.replace(piecewise, values=())
    assert _schedule(factors).startswith('schedule: sgd, learning rate 0.5 piecewise: 0.5 until')
    assert trainer.recorded_settings(factors)['learning_rate'] == 0.5


def test_card_records_the_batch_norm_decay_the_net_uses():
    card = card_lib.from_registry('ssd_300_mobilenet', class_names=('a',))
    given = trainer.net_card(card, trainer.TrainSettings(batch_norm_decay=0.5))
    assert given.params == card.params._replace(batch_norm_decay=0.5)
    # Not given: the net's default, also for a card that recorded another run's decay (a resume
    # or a fine-tuning without the flag).
    assert trainer.net_card(given, trainer.TrainSettings()).params == card.params
    vgg = card_lib.from_registry('ssd_300_vgg', class_names=('a',))
    assert trainer.net_card(vgg, trainer.TrainSettings()).params == vgg.params
    with pytest.raises(trainer.UsageError) as refused:
        trainer.net_card(vgg, trainer.TrainSettings(batch_norm_decay=0.5))
    assert str(refused.value) == (
        '--batch_norm_decay sets the batch norm of ssd_300_mobilenet only; ssd_300_vgg has '
        'none: leave --batch_norm_decay out.'
    )


class _LossRecorder:
    """A net whose `losses` records its options (the trainer's settings as the loss gets them)."""

    options = None

    def arg_scope(self, **unused):
        return {}

    def net(self, images, is_training):
        return None, images, images, None

    def losses(self, *tensors, **options):
        self.options = options


def test_focal_loss_alpha_reaches_the_loss():
    net = _LossRecorder()
    batch = {k: tf.zeros([1]) for k in ('image', 'gclasses', 'glocalisations', 'gscores')}
    iterator = types.SimpleNamespace(get_next=lambda: batch)
    settings = trainer.TrainSettings(focal_loss_gamma=2.0, focal_loss_alpha=0.5)
    with tf.Graph().as_default():
        trainer._clones(settings, model_deploy.DeploymentConfig(), net, iterator, tf.float32)
    assert net.options == dict(
        negative_ratio=3.0, alpha=1.0, label_smoothing=0.0, focal_gamma=2.0, focal_alpha=0.5
    )


def test_fine_tuning_with_other_anchors_says_so(tmp_path):
    card_lib.write(
        str(tmp_path / 'model.json'), card_lib.from_registry('ssd_300_vgg', class_names=('a',))
    )
    with tf.Graph().as_default():
        v1.get_variable('w', initializer=1.0)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'), global_step=1)
    dataset = types.SimpleNamespace(
        name='custom',
        split_name='train',
        dataset_dir='rec',
        num_samples=8,
        class_names=['a'],
        num_classes=2,
        metadata={},
    )
    said = {}
    for preset in ('tf_port_coco', 'caffe_voc'):
        lines = []
        settings = trainer.TrainSettings(
            train_dir=str(tmp_path / 'new'), checkpoint_path=str(tmp_path), anchor_sizes=preset
        )
        card = trainer._new_card(settings, dataset, lines.append)
        assert card.anchor_size_preset == preset
        said[preset] = [line for line in lines if 'anchors' in line]
    assert said == {
        'tf_port_coco': [
            f'fine-tuning a model ({tmp_path}) with --anchor_sizes=tf_port_coco: the anchors '
            'change from caffe_voc to tf_port_coco; its box heads were trained for the old ones'
        ],
        'caffe_voc': [],  # the same anchors
    }


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
    """A 3-step training with summaries every hour (so only the first step's are due), focal
    loss, a --batch_norm_decay, a piecewise schedule from --values and a warm-up longer than the
    run: (train dir, stderr)."""
    train_dir = tmp_path_factory.mktemp('short_run') / 'train'
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={train_dir}',
        f'--dataset_dir={synthetic_voc_records() / "records"}',
        '--dataset_name=pascalvoc_2007',
        '--dataset_split_name=train',
        *TINY_TRAIN_FLAGS,
        '--max_number_of_steps=3',
        '--batch_norm_decay=0.5',
        '--focal_loss_gamma=2',
        '--focal_loss_alpha=0.5',
        '--learning_rate_decay_type=piecewise',
        '--boundaries=2',
        '--values=0.01,0.001',
        '--warmup_steps=5',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return train_dir, proc.stderr


def test_event_file_ends_at_the_last_step_and_holds_one_graph(short_run):
    train_dir, _ = short_run
    (events,) = glob.glob(str(train_dir / 'events.out.tfevents.*'))
    loss_steps, graphs, meta_graphs = [], 0, 0
    for event in v1.train.summary_iterator(events):
        graphs += bool(event.graph_def)
        meta_graphs += bool(event.meta_graph_def)
        if any(value.tag == 'total_loss' for value in event.summary.value):
            loss_steps.append(event.step)
    assert (loss_steps, graphs, meta_graphs) == ([1, 3], 1, 1)


def test_card_and_start_line_of_the_run(short_run):
    train_dir, stderr = short_run
    card = card_lib.load(str(train_dir / 'model.json'))
    assert card.params.batch_norm_decay == 0.5
    recorded = card.provenance['settings']
    assert (recorded['focal_loss_gamma'], recorded['focal_loss_alpha']) == (2.0, 0.5)
    assert recorded['learning_rate'] is None
    (schedule,) = re.findall(r'schedule: .*', stderr)
    assert schedule.startswith(
        'schedule: adam (epsilon 1e-08), learning rate piecewise: 0.01 until step 2, then 0.001,'
    )
    # 3 steps of a 5-step ramp: the last trains at (2 + 1) / 5 of the schedule's rate.
    assert (
        "--warmup_steps=5 over 3 steps: the whole run is warm-up, and its last step trains at 60% "
        "of the schedule's learning rate at most"
    ) in stderr


def test_a_resume_compares_only_the_settings_either_run_reads():
    """A run started before the refusals recorded --learning_rate beside piecewise --values and
    --momentum with adam; resumed without them (now refused), the resume recorded changes that
    changed nothing (learning_rate 0.001 -> None, momentum 0.5 -> 0.9)."""
    from datasets import dataset_factory
    from tests import train_fixtures

    old = train_fixtures.tiny_settings(
        optimizer='adam',
        momentum=0.5,
        learning_rate=0.001,
        learning_rate_decay_type='piecewise',
        boundaries=('10',),
        values=('0.01', '0.001'),
    )
    dataset = dataset_factory.get_dataset('pascalvoc_2007', 'train', old.dataset_dir)
    # As the card holds it (JSON), with the rate the card recorded then.
    old_record = json.loads(json.dumps(dict(trainer.recorded_settings(old), learning_rate=0.001)))
    card = trainer._new_card(old, dataset, print)
    card = card.replace(provenance=dict(card.provenance, settings=old_record))
    now = dataclasses.replace(old, momentum=0.9, learning_rate=0.002)
    assert trainer._resume_record(card, now, dataset, 30) == (card, [])
    # A setting the resumed run reads is a change: piecewise without --values reads the rate.
    read = dataclasses.replace(now, values=())
    _, lines = trainer._resume_record(card, read, dataset, 30)
    assert 'learning_rate 0.001 -> 0.002, values' in lines[0][1]
    assert 'momentum' not in lines[0][1]


def test_a_run_too_short_for_its_batch_norm_decay_is_warned():
    """500 steps from scratch at 0.997 left the moving statistics at 22 % of their start values:
    the model's scores did not depend on the image, and nothing said so. Hand-computed: 0.997**500
    = 0.2223; 0.05 is reached after ceil(ln 0.05 / ln 0.997) = 998 steps; 0.05**(1/500) = 0.99403,
    so 0.99 is the largest two-decimal decay that gets there in 500 steps."""
    card = card_lib.from_registry('ssd_300_mobilenet', 3, ('a', 'b'))
    assert card.params.batch_norm_decay == 0.997
    assert trainer.batch_norm_start_warning(card, 500, 34) == (
        '--batch_norm_decay=0.997 over 500 steps: the moving means and variances of 34 '
        'batch-norm layer(s) start from 0 and 1 and keep 22% of those at the end; evaluation and '
        "exported models normalise with them, so the model's outputs would barely depend on the "
        'image: train 998 steps or more, or pass --batch_norm_decay=0.99 or lower.'
    )
    # --max_number_of_steps=0 (no end) and --batch_norm_decay=1 (never moves) divided by zero.
    assert trainer.batch_norm_start_warning(card, 0, 34) is None
    assert trainer.batch_norm_start_warning(card, 1, 34).startswith(
        '--batch_norm_decay=0.997 over 1 step: '
    )
    frozen = card.with_params(batch_norm_decay=1.0)
    assert trainer.batch_norm_start_warning(frozen, 100, 34).endswith(
        'keep 100% of those at the end; evaluation and exported models normalise with them, so '
        "the model's outputs would barely depend on the image: pass --batch_norm_decay=0.97 or "
        'lower.'
    )
    assert trainer.batch_norm_start_warning(card, 998, 34) is None  # 0.997**998 = 0.0499
    assert trainer.batch_norm_start_warning(card, 500, 0) is None  # every statistic restored
    assert trainer.batch_norm_start_warning(card, None, 34) is None  # no end: nothing to say
    faster = card.with_params(batch_norm_decay=0.99)
    assert trainer.batch_norm_start_warning(faster, 1600, 34) is None  # the main job's
    vgg = card_lib.from_registry('ssd_300_vgg', 21)
    assert trainer.batch_norm_start_warning(vgg, 10, 0) is None


def test_a_warm_up_that_lasts_the_whole_run_is_warned():
    """README's recipe (--warmup_steps=1000) scaled down to --max_number_of_steps=150 trained at
    most at (149 + 1) / 1000 = 15 % of its rate, and nothing said so."""
    assert trainer.warmup_start_warning(1000, 150) == (
        "--warmup_steps=1000 over 150 steps: the whole run is warm-up, and its last step trains "
        "at 15% of the schedule's learning rate at most: pass --warmup_steps lower than "
        '--max_number_of_steps (e.g. 15).'
    )
    # Equal: the ramp reaches 1 only at the last step.
    assert '100% of the schedule' in trainer.warmup_start_warning(150, 150)
    # A tenth of a percent is not rounded to 0; 0 (no warm-up) is the advice below 10 steps.
    assert trainer.warmup_start_warning(1000, 1).endswith(
        "trains at 0.1% of the schedule's learning rate at most: pass --warmup_steps lower than "
        '--max_number_of_steps (e.g. 0).'
    )
    assert trainer.warmup_start_warning(1000, 1).startswith('--warmup_steps=1000 over 1 step: ')
    assert trainer.warmup_start_warning(149, 150) is None
    assert trainer.warmup_start_warning(0, 150) is None  # no warm-up
    assert trainer.warmup_start_warning(1000, None) is None  # no end: nothing to say
