"""Training variants that must compute what the plain training does (in-process graphs, tiny
ssd_300_mobilenet at depth 0.25 on the synthetic records, seeded input, plain SGD)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from tests.train_fixtures import tiny_settings, train_graph
from training import trainer

v1 = tf.compat.v1


def test_logged_loss_terms_add_up_to_the_total_with_clones():
    """With 2 CPU clones the total is the mean of the clones' losses plus the weight decay once
    (measured: 21.3866 = (19.5451 + 23.2280) / 2 from 1-clone runs on each half); the logged
    terms were clone 0's alone (summing to 19.5451)."""
    graph, _, log_tensors, _ = train_graph(tiny_settings(num_clones=2, clone_on_cpu=True))
    with graph.as_default(), v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        losses = sess.run(log_tensors['losses'])
    terms = ('cross_entropy_pos', 'cross_entropy_neg', 'localization', 'regularization')
    assert sum(losses[t] for t in terms) == pytest.approx(losses['total'], rel=1e-5), losses


def test_moving_averages_follow_each_steps_weights():
    """--moving_average_decay: every model variable's average is, after each step, the numpy
    EMA of the values that step left (decay min(d, (1 + step) / (10 + step)), TF's num_updates
    rule with the new global step). Before, the average read each variable in parallel with its
    update: mostly the previous step's value, some the new one (relative errors up to 0.9)."""
    decay = 0.9
    graph, train_op, _, _ = train_graph(tiny_settings(moving_average_decay=decay))
    with graph.as_default(), v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        names = [v.op.name for v in slim.get_model_variables()]
        suffix = '/ExponentialMovingAverage'
        lookup = {v.op.name: v for v in v1.global_variables()}
        assert all(n + suffix in lookup for n in names)
        fetch = {n: lookup[n] for n in names}
        fetch.update({n + suffix: lookup[n + suffix] for n in names})
        fetch['global_step'] = lookup['global_step']
        snaps = [sess.run(fetch)]
        for _ in range(3):
            sess.run(train_op)
            snaps.append(sess.run(fetch))
    for name in names:
        average = snaps[0][name + suffix].astype(np.float64)
        for t in range(1, 4):
            step = int(snaps[t]['global_step'])
            assert step == t
            d = min(decay, (1.0 + step) / (10.0 + step))
            average = d * average + (1 - d) * snaps[t][name]
            scale = np.abs(snaps[t][name]).max() + 1e-6
            np.testing.assert_allclose(
                snaps[t][name + suffix] / scale, average / scale, atol=1e-5, err_msg=name
            )


def test_nchw_where_it_cannot_train_is_one_usage_error(monkeypatch):
    assert trainer.nchw_trains_here() in (True, False)
    monkeypatch.setattr(trainer, 'nchw_trains_here', lambda: False)
    trainer.check_data_format(tiny_settings())  # NHWC: nothing to check
    with pytest.raises(trainer.UsageError, match='--data_format=NCHW.*use --data_format=NHWC'):
        trainer.check_data_format(tiny_settings(data_format='NCHW'))


def test_summary_tags_are_the_names_tensorboard_users_know():
    """v1.summary.* tag a summary with a unique op name: beside the ops total_loss and
    learning_rate and the variables, TensorBoard showed total_loss_1, learning_rate_1 and
    <variable>_1."""
    graph, _, log_tensors, _ = train_graph(
        tiny_settings(histograms=True, num_clones=2, clone_on_cpu=True)
    )
    with graph.as_default(), v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        merged, losses = sess.run([v1.summary.merge_all(), log_tensors['losses']])
        summary = v1.Summary.FromString(merged)
        names = [v.op.name for v in v1.trainable_variables()]
        rate = sess.run(graph.get_tensor_by_name('learning_rate:0'))
    tags = {value.tag: value for value in summary.value}
    # The loss terms once, the clones' mean as the log prints it, not one tag per clone
    # (clone_0/ssd_losses/losses/cross_entropy_pos, clone_1/...).
    terms = ('cross_entropy_pos', 'cross_entropy_neg', 'localization', 'regularization')
    scalars = {'total_loss', 'learning_rate'} | {f'losses/{t}' for t in terms}
    assert {t for t, v in tags.items() if v.WhichOneof('value') == 'simple_value'} == scalars
    for term in terms:  # the batch the summaries read is the one the log tensors read
        assert tags[f'losses/{term}'].simple_value == pytest.approx(losses[term], rel=1e-5)
    assert tags['learning_rate'].simple_value == pytest.approx(rate) == 0.01
    assert set(names) <= set(tags) and names
    assert not [tag for tag in tags if tag.endswith('_1')], sorted(tags)


def test_focal_loss_heads_start_at_retinanets_background_prior():
    """With focal loss every anchor's background term counts: at even class scores the first
    loss was the easy negatives' (131 against 21 without focal loss). The class heads start at a
    background probability of 0.99 (RetinaNet's prior); without focal loss their biases are 0."""
    for gamma in (2.0, None):
        graph, _, log_tensors, _ = train_graph(tiny_settings(focal_loss_gamma=gamma))
        with graph.as_default(), v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            heads = [v for v in v1.trainable_variables() if v.op.name.endswith('_conf/biases')]
            biases, losses = sess.run([heads, log_tensors['losses']])
        assert len(heads) == 6
        for values in biases:
            per_anchor = values.reshape(-1, 7)  # 6 synthetic classes + background
            expected = np.zeros_like(per_anchor)
            if gamma is not None:
                expected[:, 0] = np.log(0.99 * 6 / 0.01)
            np.testing.assert_allclose(per_anchor, expected, rtol=1e-6)
        if gamma is not None:
            assert losses['cross_entropy_neg'] < 1.0, losses
