"""What a fine-tuning restore says (model/checkpoints.py): a checkpoint of another top-level
scope names the --checkpoint_model_scope to pass, and a plan says by scope what it restores and
what starts from its initialisers.

The TF-Slim vgg_16 checkpoint is given by its names and shapes (what `plan_restore` reads, from
`reader.get_variable_to_shape_map()`): its fc6 alone is 400 MB on disk."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from model import checkpoints

v1 = tf.compat.v1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGG_HINT = (
    "the checkpoint's variables are under vgg_16/, the model's under ssd_300_vgg/: pass "
    "--checkpoint_model_scope=vgg_16 (it then finds 30 of the model's 71 variables)."
)
VGG_SUMMARY = (
    "30 of the model's 71 variables restored: ssd_300_vgg/conv1..conv7 (conv6, conv7 sub-sampled "
    "from vgg_16/fc6, vgg_16/fc7); 41 start from their initialisers: ssd_300_vgg/block8..block11, "
    'ssd_300_vgg/*_box.'
)


def _vgg_16_shapes():
    """Names and shapes of TF-Slim's ImageNet `vgg_16.ckpt` (with its global_step)."""
    shapes = {'global_step': []}
    depth = 3
    for block, (width, layers) in enumerate(
        [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1
    ):
        for layer in range(1, layers + 1):
            scope = f'vgg_16/conv{block}/conv{block}_{layer}/'
            shapes[scope + 'weights'] = [3, 3, depth, width]
            shapes[scope + 'biases'] = [width]
            depth = width
    for name, weights in (
        ('fc6', [7, 7, 512, 4096]),
        ('fc7', [1, 1, 4096, 4096]),
        ('fc8', [1, 1, 4096, 1000]),
    ):
        shapes[f'vgg_16/{name}/weights'] = weights
        shapes[f'vgg_16/{name}/biases'] = weights[-1:]
    return shapes


@pytest.fixture(scope='module')
def ssd_300_vgg():
    """(graph, model variables) of ssd_300_vgg for 21 classes."""
    from nets import nets_factory
    import tf_slim as slim

    graph = tf.Graph()
    with graph.as_default():
        _, network_fn = nets_factory.get_network_fn('ssd_300_vgg', 21)
        network_fn(v1.placeholder(tf.float32, [1, 300, 300, 3]))
        return graph, slim.get_model_variables()


def _error(variables, shapes, *args, **kwargs):
    """The message of `plan_restore`'s ValueError."""
    with pytest.raises(ValueError) as info:
        checkpoints.plan_restore(variables, shapes, 'ssd_300_vgg', *args, **kwargs)
    return str(info.value)


def test_a_tf_slim_vgg_16_checkpoint_names_its_scope_first(ssd_300_vgg):
    """Without the flag it listed 30 variables `(as ssd_300_vgg/...)`, never said `vgg_16`, and
    led with --ignore_missing_vars, which restores nothing of them."""
    _, variables = ssd_300_vgg
    shapes = _vgg_16_shapes()
    assert _error(variables, shapes) == VGG_HINT
    assert _error(variables, shapes, ignore_missing_vars=True) == VGG_HINT
    assert _error(variables, shapes, 'vgg16') == (
        "the checkpoint's variables are under vgg_16/, not vgg16/: pass "
        "--checkpoint_model_scope=vgg_16 (it then finds 30 of the model's 71 variables)."
    )


def test_the_named_scope_restores_the_backbone_and_says_what_starts_anew(ssd_300_vgg):
    _, variables = ssd_300_vgg
    items = checkpoints.plan_restore(variables, _vgg_16_shapes(), 'ssd_300_vgg', 'vgg_16')
    assert len(items) == 30
    assert checkpoints.describe_restore(items, variables) == VGG_SUMMARY


def test_a_checkpoint_of_the_models_own_scope(ssd_300_vgg):
    """A training's checkpoint (global_step, Adam's powers, optimizer slots) restores whole; a
    --checkpoint_model_scope given with it is named to leave out; one lacking layers names them
    to exclude, with --ignore_missing_vars last."""
    _, variables = ssd_300_vgg
    shapes = {'global_step': [], 'beta1_power': []}
    for v in variables:
        shapes[v.op.name] = shapes[v.op.name + '/Momentum'] = v.shape.as_list()
    items = checkpoints.plan_restore(variables, shapes, 'ssd_300_vgg')
    assert checkpoints.describe_restore(items, variables) == (
        "71 of the model's 71 variables restored: ssd_300_vgg."
    )
    assert _error(variables, shapes, 'vgg_16') == (
        "the checkpoint's variables are under ssd_300_vgg/, as the model's: leave out "
        "--checkpoint_model_scope=vgg_16 (it then finds 71 of the model's 71 variables)."
    )
    without = {n: s for n, s in shapes.items() if 'block11' not in n}
    assert _error(variables, without, exclude_scopes='ssd_300_vgg/block10_box') == (
        "the checkpoint lacks 8 of the model's 71 variables (e.g. "
        'ssd_300_vgg/block11/conv1x1/weights, ssd_300_vgg/block11/conv1x1/biases): pass '
        '--checkpoint_exclude_scopes=ssd_300_vgg/block10_box,ssd_300_vgg/block11,'
        'ssd_300_vgg/block11_box to leave them out, or --ignore_missing_vars to start whatever '
        'the checkpoint lacks from its initialiser.'
    )
    warnings = []
    items = checkpoints.plan_restore(
        variables, without, 'ssd_300_vgg', ignore_missing_vars=True, log=warnings.append
    )
    assert len(warnings) == 1
    assert checkpoints.describe_restore(items, variables) == (
        "63 of the model's 71 variables restored: ssd_300_vgg/conv1..conv7, "
        'ssd_300_vgg/block8..block10, ssd_300_vgg/block4_box, ssd_300_vgg/block7_box..block10_box; '
        '8 start from their initialisers: ssd_300_vgg/block11, ssd_300_vgg/block11_box.'
    )


def test_an_unrelated_checkpoint_is_another_net(ssd_300_vgg):
    """No scope of it finds a variable of the model: no flag to pass but the checkpoint's."""
    _, variables = ssd_300_vgg
    shapes = {'global_step': [], 'resnet_v1_50/conv1/weights': [7, 7, 3, 64]}
    advice = (
        "; check --checkpoint_path and --model_name, or pass the checkpoint's scope as "
        "--checkpoint_model_scope (vgg_16 and MobilenetV1 map TF-Slim's ImageNet backbones)."
    )
    held = (
        'no variable of the model matches the checkpoint: its variables are under '
        "resnet_v1_50/, the model's under ssd_300_vgg/"
    )
    assert _error(variables, shapes) == held + advice
    assert _error(variables, shapes, ignore_missing_vars=True) == held + advice
    assert _error(variables, shapes, 'vgg_16') == held + ' (read as vgg_16/)' + advice
    two = {'a/w': [1], 'b/w': [1]}
    assert _error(variables, two) == (
        "no variable of the model matches the checkpoint: its variables are under a/, b/, the "
        "model's under ssd_300_vgg/" + advice
    )


def test_another_nets_checkpoint_is_not_sent_to_checkpoint_model_scope(ssd_300_vgg):
    """MobileNet-SSD's `conv6/weights` and `conv7/weights` are names of ssd_300_vgg's too, of
    other shapes: counted by name, the error said to pass --checkpoint_model_scope=
    ssd_300_mobilenet ("it then finds 2 of the model's 71 variables"), which restores none."""
    _, variables = ssd_300_vgg
    shapes = {
        'global_step': [],
        'ssd_300_mobilenet/conv0/weights': [3, 3, 3, 32],
        'ssd_300_mobilenet/conv6/weights': [1, 1, 256, 512],
        'ssd_300_mobilenet/conv7/weights': [1, 1, 512, 512],
    }
    assert _error(variables, shapes) == (
        'no variable of the model matches the checkpoint: its variables are under '
        "ssd_300_mobilenet/, the model's under ssd_300_vgg/; check --checkpoint_path and "
        "--model_name, or pass the checkpoint's scope as --checkpoint_model_scope (vgg_16 and "
        "MobilenetV1 map TF-Slim's ImageNet backbones)."
    )


def test_variables_neither_restored_nor_trained_are_named(ssd_300_vgg):
    """A 3-class fine-tune of the converted Caffe SSD300: the class heads are excluded from the
    restore (new classes) and --trainable_scopes names the extra layers only. The heads kept
    their random initial values to the end, and nothing said so."""
    _, variables = ssd_300_vgg
    shapes = {v.op.name: v.shape.as_list() for v in variables}
    heads = ','.join(f'ssd_300_vgg/block{n}_box/conv_cls' for n in (4, 7, 8, 9, 10, 11))
    items = checkpoints.plan_restore(variables, shapes, 'ssd_300_vgg', exclude_scopes=heads)
    extra = 'ssd_300_vgg/block8,ssd_300_vgg/block9,ssd_300_vgg/block10,ssd_300_vgg/block11'
    assert checkpoints.frozen_at_start(variables, items, extra) == (
        12,
        'ssd_300_vgg/block4_box/conv_cls, ssd_300_vgg/block7_box/conv_cls, '
        'ssd_300_vgg/block8_box/conv_cls, ssd_300_vgg/block9_box/conv_cls, '
        'ssd_300_vgg/block10_box/conv_cls, ssd_300_vgg/block11_box/conv_cls',
    )
    # Trained, or restored and frozen (the backbone), or no --trainable_scopes: nothing to say.
    assert checkpoints.frozen_at_start(variables, items, heads) is None
    assert checkpoints.frozen_at_start(variables, items, None) is None
    # Nothing restored (from scratch): every variable outside the scopes.
    assert checkpoints.frozen_at_start(variables, [], 'ssd_300_vgg/block4_box')[0] == 71 - 5


def test_a_partial_restore_names_the_layers_inside_a_block(ssd_300_vgg, tmp_path):
    """A real restore from a vgg_16 file holding conv1_1 only: conv1 is split, by layer."""
    graph, variables = ssd_300_vgg
    saved = {
        'vgg_16/conv1/conv1_1/weights': np.full((3, 3, 3, 64), 0.5, np.float32),
        'vgg_16/conv1/conv1_1/biases': np.full(64, 0.25, np.float32),
    }
    with tf.Graph().as_default():
        values = [v1.get_variable(n, initializer=a) for n, a in saved.items()]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver(values).save(sess, str(tmp_path / 'vgg_16.ckpt'))
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with graph.as_default():
        items = checkpoints.plan_restore(
            variables, shapes, 'ssd_300_vgg', 'vgg_16', ignore_missing_vars=True, log=print
        )
        restorer = checkpoints.Restorer(prefix, items)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            restorer.restore(sess)
            for item in items:
                np.testing.assert_array_equal(sess.run(item.variable), saved[item.checkpoint_name])
    assert checkpoints.describe_restore(items, variables) == (
        "2 of the model's 71 variables restored: ssd_300_vgg/conv1/conv1_1; 69 start from their "
        'initialisers: ssd_300_vgg/conv1/conv1_2, ssd_300_vgg/conv2..conv7, '
        'ssd_300_vgg/block8..block11, ssd_300_vgg/*_box.'
    )


def test_the_readme_quotes_them():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = re.sub(r'\s+', ' ', f.read())
    assert f'`{VGG_HINT[:-1]}`' in text
    assert f'`{VGG_SUMMARY}`' in text
