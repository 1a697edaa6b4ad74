"""train_ssd_network.py refuses out-of-range flags when it parses them, naming the flag and what
it allows: an audit's 3-step trainings with such values finished with rc 0 (a zero or negative
learning rate, a match threshold above 1, momentum 1, ...) or failed late without naming the
flag (a 20-digit --seed was a TypeError traceback; 100000 readers hung). Defaults, the demo's
training command and the edges of each range still parse.

All cases run in one child process that imports the script once (its absl flags would collide
with other scripts' in the test process) and parses each command line in turn."""

import json

import tensorflow as tf

from tests.conftest import run_python
from training import optimization

INT64_MAX = 2**63 - 1

# flag=value -> what absl's error must say (besides naming the flag and its value).
REFUSED = {
    '--learning_rate=0': '--learning_rate must be a finite number > 0',
    '--learning_rate=-0.001': '--learning_rate must be a finite number > 0',
    '--learning_rate=nan': '--learning_rate must be a finite number > 0',
    '--learning_rate=inf': '--learning_rate must be a finite number > 0',
    '--end_learning_rate=-1e-5': '--end_learning_rate must be a finite number >= 0',
    '--end_learning_rate=nan': '--end_learning_rate must be a finite number >= 0',
    '--negative_ratio=0': '--negative_ratio must be a finite number > 0',
    '--negative_ratio=inf': '--negative_ratio must be a finite number > 0',
    '--match_threshold=0': '--match_threshold must lie in (0, 1]',
    '--match_threshold=1.5': '--match_threshold must lie in (0, 1]',
    '--label_smoothing=1': '--label_smoothing must lie in [0, 1)',
    '--label_smoothing=-0.1': '--label_smoothing must lie in [0, 1)',
    '--focal_loss_gamma=-1': '--focal_loss_gamma must be a finite number >= 0',
    '--focal_loss_gamma=nan': '--focal_loss_gamma must be a finite number >= 0',
    '--loss_alpha=-1': '--loss_alpha must be a finite number >= 0',
    '--loss_alpha=inf': '--loss_alpha must be a finite number >= 0',
    '--adam_beta1=1': '--adam_beta1 must lie in [0, 1)',
    '--adam_beta2=1.0': '--adam_beta2 must lie in [0, 1)',
    '--momentum=1': '--momentum must lie in [0, 1)',
    '--momentum=-0.1': '--momentum must lie in [0, 1)',
    '--rmsprop_momentum=1': '--rmsprop_momentum must lie in [0, 1)',
    '--rmsprop_decay=1': '--rmsprop_decay must lie in [0, 1)',
    '--adadelta_rho=1': '--adadelta_rho must lie in [0, 1)',
    '--moving_average_decay=0': '--moving_average_decay must lie in (0, 1)',
    '--moving_average_decay=1': '--moving_average_decay must lie in (0, 1)',
    '--num_epochs_per_decay=0': '--num_epochs_per_decay must be a finite number > 0',
    '--num_epochs_per_decay=nan': '--num_epochs_per_decay must be a finite number > 0',
    '--boundaries=0,10': '--boundaries must be strictly increasing integer steps',
    '--boundaries=10,5': '--boundaries must be strictly increasing integer steps',
    '--boundaries=10,10': '--boundaries must be strictly increasing integer steps',
    '--boundaries=1e4': '--boundaries must be strictly increasing integer steps',
    '--boundaries=%d' % (INT64_MAX + 1): '--boundaries must be strictly increasing integer steps',
    '--values=0.001,x': '--values must be finite learning rates >= 0',
    '--max_number_of_steps=-1': 'not an integer in the range [0, %d]' % INT64_MAX,
    '--max_number_of_steps=%d' % (INT64_MAX + 1): 'not an integer in the range [0, ',
    '--seed=12345678901234567890123': 'not an integer in the range [-%d, %d]'
    % (INT64_MAX + 1, INT64_MAX),
    '--save_interval_steps=%d' % (INT64_MAX + 1): 'not an integer in the range [1, %d]' % INT64_MAX,
    '--max_to_keep=%d' % (INT64_MAX + 1): 'not an integer in the range [1, %d]' % INT64_MAX,
    '--log_every_n_steps=%d' % (INT64_MAX + 1): 'not an integer in the range [1, %d]' % INT64_MAX,
    '--warmup_steps=%d' % (INT64_MAX + 1): 'not an integer in the range [0, %d]' % INT64_MAX,
    '--num_readers=100000': 'not an integer in the range [1, 1024]',
    '--num_preprocessing_threads=100000': 'not an integer in the range [0, 1024]',
    # Ran to the end (rc 0), or failed late on TF's check of its own argument, or at a
    # non-finite loss or weights blamed on the learning rate.
    '--weight_decay=-1': '--weight_decay must be a finite number >= 0',
    '--weight_decay=nan': '--weight_decay must be a finite number >= 0',
    '--opt_epsilon=0': '--opt_epsilon must be a finite number > 0',
    '--opt_epsilon=-1': '--opt_epsilon must be a finite number > 0',
    '--opt_epsilon=nan': '--opt_epsilon must be a finite number > 0',
    '--adagrad_initial_accumulator_value=0': (
        '--adagrad_initial_accumulator_value must be a finite number > 0, as Adagrad requires'
    ),
    '--adagrad_initial_accumulator_value=nan': '--adagrad_initial_accumulator_value must be',
    '--ftrl_learning_rate_power=0.5': (
        '--ftrl_learning_rate_power must be a finite number <= 0, as FTRL requires'
    ),
    '--ftrl_learning_rate_power=nan': '--ftrl_learning_rate_power must be a finite number <= 0',
    '--ftrl_learning_rate_power=-inf': '--ftrl_learning_rate_power must be a finite number <= 0',
    '--ftrl_initial_accumulator_value=-1': (
        '--ftrl_initial_accumulator_value must be a finite number >= 0, as FTRL requires'
    ),
    '--ftrl_initial_accumulator_value=nan': '--ftrl_initial_accumulator_value must be',
    '--ftrl_l1=-1': '--ftrl_l1 must be a finite number >= 0',
    '--ftrl_l2=nan': '--ftrl_l2 must be a finite number >= 0',
    '--ftrl_l2=inf': '--ftrl_l2 must be a finite number >= 0',
    '--learning_rate_decay_factor=0': '--learning_rate_decay_factor must lie in (0, 1]',
    '--learning_rate_decay_factor=-1': '--learning_rate_decay_factor must lie in (0, 1]',
    '--learning_rate_decay_factor=nan': '--learning_rate_decay_factor must lie in (0, 1]',
    '--learning_rate_decay_factor=10': '--learning_rate_decay_factor must lie in (0, 1]',
    '--gpu_memory_fraction=0': '--gpu_memory_fraction must lie in (0, 1]',
    '--gpu_memory_fraction=-1': '--gpu_memory_fraction must lie in (0, 1]',
    '--gpu_memory_fraction=nan': '--gpu_memory_fraction must lie in (0, 1]',
    '--gpu_memory_fraction=1.5': '--gpu_memory_fraction must lie in (0, 1]',
    '--batch_norm_decay=5': '--batch_norm_decay must lie in [0, 1]',
    '--batch_norm_decay=-0.1': '--batch_norm_decay must lie in [0, 1]',
    '--batch_norm_decay=nan': '--batch_norm_decay must lie in [0, 1]',
    '--depth_multiplier=0': '--depth_multiplier must lie in (0, 4]',
    '--depth_multiplier=nan': '--depth_multiplier must lie in (0, 4]',
    '--depth_multiplier=1000': '--depth_multiplier must lie in (0, 4]',
    '--num_classes=1': 'not an integer in the range [2, 100000]',
    '--num_classes=100000000000': 'not an integer in the range [2, 100000]',
}
# Command lines refused by a check of several flags.
REFUSED_TOGETHER = {
    '--learning_rate_decay_type=piecewise': (
        '--learning_rate_decay_type=piecewise needs --boundaries'
    ),
    '--learning_rate_decay_type=piecewise --boundaries=10,20 --values=0.1,0.01': (
        '--values must give one more rate than --boundaries has steps: 2 boundaries, so 3 values'
    ),
    '--seed=%d --task_index=1' % INT64_MAX: 'out of the int64 range',
    # Ignored, with the default exponential decay (a Caffe step-LR recipe without its type).
    '--boundaries=10,20 --values=0.1,0.01,0.001': (
        '--boundaries and --values shape a piecewise schedule; this run\'s is '
        '--learning_rate_decay_type=exponential: add --learning_rate_decay_type=piecewise, or '
        'leave them out.'
    ),
    # Fine-tuning flags without the checkpoint they shape: ignored silently.
    '--checkpoint_exclude_scopes=ssd_300_vgg/block4_box --exclude_mismatched_vars': (
        '--checkpoint_exclude_scopes, --exclude_mismatched_vars shape what --checkpoint_path '
        'restores (fine-tuning); this run gives none: add --checkpoint_path, or leave them out.'
    ),
    '--learning_rate_decay_type=cosine --values=0.1': (
        "--values shape a piecewise schedule; this run's is --learning_rate_decay_type=cosine"
    ),
}
ACCEPTED = [
    '',  # the defaults
    '--learning_rate=1e30',  # finite: the non-finite loss stops it (tests/test_train_run.py)
    '--learning_rate_decay_type=polynomial --end_learning_rate=0',
    '--match_threshold=1',
    '--label_smoothing=0',
    '--focal_loss_gamma=0',
    '--loss_alpha=0',
    '--adam_beta1=0',
    '--optimizer=momentum --momentum=0',
    '--optimizer=rmsprop --rmsprop_momentum=0',
    '--optimizer=momentum --momentum=0.9',
    '--moving_average_decay=0.9999',
    '--max_number_of_steps=0',  # no limit, as not giving it
    '--max_number_of_steps=%d' % INT64_MAX,
    '--seed=%d' % INT64_MAX,
    '--seed=-%d' % (INT64_MAX + 1),
    '--seed=0 --task_index=3',
    '--num_readers=1024 --num_preprocessing_threads=0',
    '--learning_rate_decay_type=piecewise --boundaries=80000,100000',
    '--learning_rate_decay_type=piecewise --boundaries=80000,100000 --values=1e-3,1e-4,1e-5',
    '--weight_decay=0',
    '--optimizer=adagrad --adagrad_initial_accumulator_value=1e-9',
    '--optimizer=ftrl --ftrl_learning_rate_power=0 --ftrl_initial_accumulator_value=0 '
    '--ftrl_l1=0.01 --ftrl_l2=0',
    '--learning_rate_decay_factor=1',
    '--gpu_memory_fraction=1',
    '--batch_norm_decay=0',
    '--batch_norm_decay=1',
    '--model_name=ssd_300_mobilenet --depth_multiplier=4',
    '--num_classes=2',
    '--num_epochs_per_decay=1e300',  # its decay steps are capped (test below)
]

CHILD = r'''
import argparse, json, os, shutil, sys, tempfile
import train_ssd_network  # noqa: F401  (defines the flags)
import run_demo
from tests.flag_parsing import parse_lines

# The demo's training command (run_demo.py), its default settings and tiny ones.
commands = []
run_demo.run = lambda args, on_line=None, env=None: commands.append(args)
for steps, batch_size in ((1600, 16), (4, 2)):
    work_dir = tempfile.mkdtemp()
    run_demo.Demo(argparse.Namespace(
        work_dir=work_dir, num_images=1200, steps=steps, batch_size=batch_size,
        learning_rate=0.004, depth_multiplier=0.5, num_detect_images=4, seed=0,
        precision='bf16', fresh=False)).train()
    shutil.rmtree(work_dir)
demo = [' '.join(c[1:]) for c in commands if c[0] == 'train_ssd_network.py']
assert len(demo) == 2, commands

results = parse_lines('train_ssd_network.py', json.loads(sys.argv[1]) + demo)
print('RESULTS ' + json.dumps({'results': results, 'demo': demo}))
'''


def test_out_of_range_flags_are_refused_naming_the_flag():
    lines = list(REFUSED) + list(REFUSED_TOGETHER) + ACCEPTED
    proc = run_python(CHILD, json.dumps(lines))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split('RESULTS ', 1)[1])
    results = out['results']
    for line in ACCEPTED + out['demo']:
        assert results[line] is None, (line, results[line])
    for line, message in REFUSED.items():
        error = results[line]
        assert error is not None, line + ' was accepted'
        name = line.split('=', 1)[0]
        assert name in error and message in error, (line, error)
    for line, message in REFUSED_TOGETHER.items():
        error = results[line]
        assert error is not None and message in error, (line, error)
    # One full message: the flag, its value and what it allows.
    assert results['--momentum=1'] == (
        'flag --momentum=1.0: --momentum must lie in [0, 1) (default 0.9).'
    )


def test_a_decay_longer_than_int64_steps_never_decays():
    """--num_epochs_per_decay=1e300 (finite, accepted) made decay steps beyond int64: a
    TypeError traceback from TF's schedule. They are capped at the int64 maximum now."""
    steps = optimization.decay_steps_per_epochs(16551, 32, 1e300)
    assert steps == INT64_MAX
    assert optimization.decay_steps_per_epochs(16551, 32, 2.0) == 1034
    for decay_type in ('exponential', 'polynomial'):
        with tf.Graph().as_default():
            step = tf.constant(10**6, tf.int64)
            rate = optimization.learning_rate_schedule(
                step, decay_type, 0.001, decay_steps=steps, decay_factor=0.94
            )
            with tf.compat.v1.Session() as sess:
                assert abs(sess.run(rate) - 0.001) < 1e-9, decay_type
