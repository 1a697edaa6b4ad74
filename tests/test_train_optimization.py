"""Learning-rate schedules and optimizers (training/optimization.py) against hand formulas."""

import math

import numpy as np
import pytest
import tensorflow as tf

from training import optimization
from training import trainer

v1 = tf.compat.v1
STEPS = [0, 1, 9, 10, 49, 50, 99, 100, 150, 1000]


def _rates(steps=STEPS, **kwargs):
    with tf.Graph().as_default():
        step = v1.placeholder(tf.int64, [])
        rate = optimization.learning_rate_schedule(step, **kwargs)
        with v1.Session() as sess:
            return np.array([sess.run(rate, {step: s}) for s in steps])


def test_fixed_exponential_polynomial():
    np.testing.assert_allclose(_rates(decay_type='fixed', learning_rate=0.1), 0.1)
    np.testing.assert_allclose(
        _rates(decay_type='exponential', learning_rate=0.1, decay_steps=10, decay_factor=0.5),
        [0.1 * 0.5 ** (s // 10) for s in STEPS],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _rates(decay_type='polynomial', learning_rate=0.1, decay_steps=100, end_learning_rate=0.01),
        [0.01 + 0.09 * (1 - min(s, 100) / 100) for s in STEPS],
        rtol=1e-6,
    )


def test_piecewise_caffe_recipe_and_explicit_values():
    steps = [0, 79999, 80000, 99999, 100000, 120000]
    np.testing.assert_allclose(
        _rates(
            steps,
            decay_type='piecewise',
            learning_rate=1e-3,
            boundaries=['80000', '100000'],
            decay_factor=0.1,
        ),
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _rates(
            steps,
            decay_type='piecewise',
            learning_rate=1.0,
            boundaries=[80000, 100000],
            values=[0.3, 0.2, 0.1],
        ),
        [0.3, 0.3, 0.2, 0.2, 0.1, 0.1],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match='one more value'):
        _rates(decay_type='piecewise', learning_rate=1.0, boundaries=[5], values=[1.0])


def test_cosine_with_warmup():
    rates = _rates(
        decay_type='cosine',
        learning_rate=0.1,
        end_learning_rate=0.001,
        total_steps=100,
        warmup_steps=10,
    )
    expected = [
        (0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * min(s, 100) / 100))) * min((s + 1) / 10, 1.0)
        for s in STEPS
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    # Warmup multiplies any schedule.
    np.testing.assert_allclose(
        _rates([0, 4, 5], decay_type='fixed', learning_rate=1.0, warmup_steps=5), [0.2, 1.0, 1.0]
    )


def test_schedule_errors():
    with pytest.raises(ValueError, match='learning_rate_decay_type'):
        _rates(decay_type='linear', learning_rate=1.0)
    with pytest.raises(ValueError, match='positive number of steps'):
        _rates(decay_type='cosine', learning_rate=1.0)
    assert optimization.decay_steps_per_epochs(16551, 32, 2.0) == int(16551 / 32 * 2)


@pytest.mark.parametrize(
    'name,cls,attrs',
    [
        ('adam', v1.train.AdamOptimizer, {'_epsilon': 1e-8, '_beta1': 0.9, '_beta2': 0.999}),
        ('momentum', v1.train.MomentumOptimizer, {'_momentum': 0.9}),
        ('rmsprop', v1.train.RMSPropOptimizer, {'_epsilon': 1e-8, '_decay': 0.9, '_momentum': 0.9}),
        ('adadelta', v1.train.AdadeltaOptimizer, {'_rho': 0.95, '_epsilon': 1e-8}),
        ('adagrad', v1.train.AdagradOptimizer, {'_initial_accumulator_value': 0.1}),
        ('ftrl', v1.train.FtrlOptimizer, {'_learning_rate_power': -0.5}),
        ('sgd', v1.train.GradientDescentOptimizer, {}),
    ],
)
def test_optimizers_by_name(name, cls, attrs):
    optimizer = optimization.make_optimizer(name, 0.01)
    assert isinstance(optimizer, cls)
    for key, value in attrs.items():
        assert getattr(optimizer, key) == value
    with pytest.raises(ValueError, match='optimizer must be one of'):
        optimization.make_optimizer('lamb', 0.01)


# Every optimizer setting at its own value, none at TF's default: a setting passed to the wrong
# argument (rmsprop's decay and momentum are both 0.9 by default) reads as another's value.
DISTINCT_SETTINGS = dict(
    opt_epsilon=0.011,
    adadelta_rho=0.012,
    adagrad_initial_accumulator_value=0.013,
    adam_beta1=0.014,
    adam_beta2=0.015,
    ftrl_learning_rate_power=-0.016,
    ftrl_initial_accumulator_value=0.017,
    ftrl_l1=0.018,
    ftrl_l2=0.019,
    momentum=0.021,
    rmsprop_momentum=0.022,
    rmsprop_decay=0.023,
)


@pytest.mark.parametrize(
    'name,attrs',
    [
        ('adadelta', {'_rho': 0.012, '_epsilon': 0.011}),
        ('adagrad', {'_initial_accumulator_value': 0.013}),
        ('adam', {'_beta1': 0.014, '_beta2': 0.015, '_epsilon': 0.011}),
        (
            'ftrl',
            {
                '_learning_rate_power': -0.016,
                '_initial_accumulator_value': 0.017,
                '_l1_regularization_strength': 0.018,
                '_l2_regularization_strength': 0.019,
            },
        ),
        ('momentum', {'_momentum': 0.021}),
        ('rmsprop', {'_momentum': 0.022, '_decay': 0.023, '_epsilon': 0.011}),
    ],
)
def test_each_setting_reaches_its_optimizer_argument(name, attrs):
    """Through `make_optimizer`, and from a training's settings (`trainer.optimizer`)."""
    settings = trainer.TrainSettings(optimizer=name, **DISTINCT_SETTINGS)
    trained, _ = trainer.optimizer(
        settings, 0.01, tf.float32, trainer.cluster_setup(settings, environ={})
    )
    for optimizer in (optimization.make_optimizer(name, 0.01, **DISTINCT_SETTINGS), trained):
        assert {key: getattr(optimizer, key) for key in attrs} == attrs


def test_reads_setting_names_the_settings_a_run_uses():
    piecewise = {'learning_rate_decay_type': 'piecewise', 'values': ['0.1', '0.01']}
    by_factor = {'learning_rate_decay_type': 'piecewise', 'values': []}
    cosine = {'learning_rate_decay_type': 'cosine', 'optimizer': 'rmsprop'}
    assert not optimization.reads_setting('learning_rate', piecewise)
    assert not optimization.reads_setting('learning_rate_decay_factor', piecewise)
    assert optimization.reads_setting('learning_rate_decay_factor', by_factor)
    assert not optimization.reads_setting('learning_rate_decay_factor', cosine)
    assert optimization.reads_setting('end_learning_rate', cosine)
    assert not optimization.reads_setting('num_epochs_per_decay', cosine)
    assert optimization.reads_setting('rmsprop_decay', cosine)
    assert not optimization.reads_setting('momentum', cosine)
    assert optimization.reads_setting('batch_size', cosine)
