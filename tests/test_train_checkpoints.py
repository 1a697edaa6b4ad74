"""Checkpoint-path resolution and scope-based restore (model/checkpoints.py)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model import checkpoints
from training import hooks

v1 = tf.compat.v1


def _write(directory, name, step, value, update_state=True):
    """Saves variable `w` = value as `<directory>/<name>-<step>`; returns the prefix."""
    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.float32(value))
        saver = v1.train.Saver([w])
        with v1.Session() as sess:
            sess.run(w.initializer)
            return saver.save(
                sess, os.path.join(directory, name), global_step=step, write_state=update_state
            )


def _write_v1(path, value):
    from tensorflow.core.protobuf import saver_pb2

    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.float32(value))
        with v1.Session() as sess:
            sess.run(w.initializer)
            v1.train.Saver([w], write_version=saver_pb2.SaverDef.V1).save(
                sess, path, write_meta_graph=False, write_state=False
            )
    return path


def test_resolve_prefix_index_data_and_directory(tmp_path):
    d = str(tmp_path)
    first = _write(d, 'model.ckpt', 5, 1.0)
    second = _write(d, 'model.ckpt', 10, 2.0)
    assert checkpoints.resolve_checkpoint(first) == first
    assert checkpoints.resolve_checkpoint(first + '.index') == first
    data = [f for f in os.listdir(d) if f.startswith('model.ckpt-5.data-')]
    assert len(data) == 1
    assert checkpoints.resolve_checkpoint(os.path.join(d, data[0])) == first
    assert checkpoints.resolve_checkpoint(d) == second
    assert float(tf.train.load_checkpoint(checkpoints.resolve_checkpoint(d)).get_tensor('w')) == 2.0


def test_directory_without_state_file_takes_highest_step(tmp_path):
    d = str(tmp_path)
    _write(d, 'model.ckpt', 100, 1.0)
    _write(d, 'model.ckpt', 20, 2.0, update_state=False)
    os.remove(os.path.join(d, 'checkpoint'))
    assert checkpoints.resolve_checkpoint(d) == os.path.join(d, 'model.ckpt-100')


def test_state_file_names_only_the_folders_own_checkpoints(tmp_path, monkeypatch):
    """A copied folder's state file still names the original's checkpoints (absolute, or relative
    outside it): they count by their name here; one with no checkpoint of its name here is left
    out, and a state file that names none of this folder's (or is not one) leaves the glob."""
    original, copy = tmp_path / 'original', tmp_path / 'copy'
    original.mkdir()
    copy.mkdir()
    for step, value in ((5, 1.0), (10, 2.0), (15, 3.0)):
        _write(str(original), 'model.ckpt', step, value)
    for step in (5, 10):
        for name in os.listdir(original):
            if name.startswith(f'model.ckpt-{step}.'):
                (copy / name).write_bytes((original / name).read_bytes())
    state = copy / 'checkpoint'
    d = str(copy)

    def names(text):
        state.write_text(text)
        latest, listed = checkpoints.checkpoint_state(d)
        return latest and os.path.basename(latest), [os.path.basename(p) for p in listed]

    o = str(original)
    absolute = ''.join(f'all_model_checkpoint_paths: "{o}/model.ckpt-{s}"\n' for s in (5, 10, 15))
    assert names(f'model_checkpoint_path: "{o}/model.ckpt-10"\n' + absolute) == (
        'model.ckpt-10',
        ['model.ckpt-5', 'model.ckpt-10'],
    )
    assert checkpoints.latest_in_directory(d) == os.path.join(d, 'model.ckpt-10')
    # The original's latest has no copy here: the highest step here, not the original's file.
    assert names(f'model_checkpoint_path: "{o}/model.ckpt-15"\n' + absolute)[0] is None
    assert checkpoints.latest_in_directory(d) == os.path.join(d, 'model.ckpt-10')
    relative = 'model_checkpoint_path: "../original/model.ckpt-5"\n'
    assert names(relative) == ('model.ckpt-5', [])
    assert checkpoints.latest_in_directory(d) == os.path.join(d, 'model.ckpt-5')
    for garbage in ('not a state file {', '', '\xff'):
        assert names(garbage) == (None, [])
        assert checkpoints.latest_in_directory(d) == os.path.join(d, 'model.ckpt-10')
    # The trainer's rewrite: relative names of what was read, the latest last; then stable.
    state.write_text(f'model_checkpoint_path: "{o}/model.ckpt-5"\n' + absolute)
    assert checkpoints.localize_state_file(d) == str(state)
    assert tf.train.get_checkpoint_state(d).all_model_checkpoint_paths == [
        os.path.join(d, 'model.ckpt-10'),
        os.path.join(d, 'model.ckpt-5'),
    ]
    assert o not in state.read_text()
    assert checkpoints.localize_state_file(d) is None
    # A folder spelled relatively, its state file naming a deleted latest by absolute path:
    # each name once (the fallback's spelling differs from the listed one's).
    monkeypatch.chdir(tmp_path)
    state.write_text(
        f'model_checkpoint_path: "{d}/model.ckpt-15"\n'
        f'all_model_checkpoint_paths: "{d}/model.ckpt-5"\n'
        f'all_model_checkpoint_paths: "{d}/model.ckpt-10"\n'
    )
    assert checkpoints.localize_state_file('copy') == os.path.join('copy', 'checkpoint')
    assert tf.train.get_checkpoint_state(d).all_model_checkpoint_paths == [
        os.path.join(d, 'model.ckpt-5'),
        os.path.join(d, 'model.ckpt-10'),
    ]
    # A pointer: a folder of no checkpoints whose state file names another folder's, as TF
    # allows; readers resolve it there, as TF does; a training there is refused.
    pointer = tmp_path / 'pointer'
    pointer.mkdir()
    text = f'model_checkpoint_path: "{o}/model.ckpt-15"\n'
    (pointer / 'checkpoint').write_text(text)
    assert checkpoints.resolve_checkpoint(str(pointer)) == f'{o}/model.ckpt-15'
    assert checkpoints.localize_state_file(str(pointer)) is None
    assert (pointer / 'checkpoint').read_text() == text
    with pytest.raises(ValueError, match='names a checkpoint of another folder'):
        checkpoints.resume_checkpoint(str(pointer))
    assert checkpoints.resume_checkpoint(d) == os.path.join(d, 'model.ckpt-10')
    assert checkpoints.resume_checkpoint(str(tmp_path / 'new')) is None
    (pointer / 'checkpoint').write_text(f'model_checkpoint_path: "{o}/model.ckpt-99"\n')
    with pytest.raises(FileNotFoundError, match='no `checkpoint` state file naming one'):
        checkpoints.resolve_checkpoint(str(pointer))


def test_v1_single_file_passes_through(tmp_path):
    path = _write_v1(str(tmp_path / 'vgg_16.ckpt'), 3.0)  # TF-Slim's ImageNet checkpoints
    assert checkpoints.resolve_checkpoint(path) == path
    # A file that only has a checkpoint's name is refused, naming it (test_checkpoint_errors).
    (tmp_path / 'fake.ckpt').write_bytes(b'v1')
    with pytest.raises(checkpoints.CheckpointError, match='fake.ckpt: not a TensorFlow checkpoint'):
        checkpoints.resolve_checkpoint(str(tmp_path / 'fake.ckpt'))


@pytest.mark.parametrize('version', ['v2', 'v1'])
def test_staged_copy_outlives_the_original(tmp_path, version):
    """What export reads from: a staged copy stays readable after the trainer deletes the
    checkpoint, and is gone (with its hidden folder) once the export is done."""
    train, out = tmp_path / 'train', tmp_path / 'out'
    train.mkdir()
    out.mkdir()
    if version == 'v2':
        prefix = _write(str(train), 'model.ckpt', 7, 4.5)
    else:
        prefix = _write_v1(str(train / 'vgg_16.ckpt'), 4.5)
    with checkpoints.staged_copy(prefix, str(out)) as staged:
        assert os.path.dirname(os.path.dirname(staged)) == str(out)
        for name in os.listdir(train):
            os.remove(train / name)
        assert float(tf.train.load_checkpoint(staged).get_tensor('w')) == 4.5
    assert os.listdir(out) == []
    with pytest.raises(checkpoints.CheckpointUnavailable, match='was deleted'):
        with checkpoints.staged_copy(prefix, str(out)):
            pass
    assert os.listdir(out) == []


@pytest.mark.parametrize('make', ['missing', 'empty_dir', 'empty'])
def test_errors_name_the_path(tmp_path, make):
    path = {'missing': str(tmp_path / 'nope.ckpt-3'), 'empty_dir': str(tmp_path), 'empty': ''}[make]
    with pytest.raises(FileNotFoundError) as info:
        checkpoints.resolve_checkpoint(path)
    assert path in str(info.value)


def test_a_missing_step_lists_the_checkpoints_of_its_folder(tmp_path):
    """--checkpoint_path=model.ckpt-99 (a typo, or a step max_to_keep removed) said what it
    expected, not what is there."""
    for step in (100, 5, 10, 20, 30, 0):
        (tmp_path / f'model.ckpt-{step}.index').write_bytes(b'')
    (tmp_path / 'converted.ckpt.index').write_bytes(b'')  # no step: first
    with pytest.raises(FileNotFoundError) as info:
        checkpoints.resolve_checkpoint(str(tmp_path / 'model.ckpt-99'))
    assert str(info.value).endswith(
        f'or a directory holding checkpoints; {tmp_path} holds model.ckpt-5, model.ckpt-10, '
        'model.ckpt-20, model.ckpt-30, model.ckpt-100 (the latest five).'
    )
    for name in os.listdir(tmp_path):
        if name not in ('model.ckpt-0.index', 'converted.ckpt.index'):
            os.remove(tmp_path / name)
    with pytest.raises(FileNotFoundError) as info:
        checkpoints.resolve_checkpoint(str(tmp_path / 'model.ckpt-99'))
    assert str(info.value).endswith(f'; {tmp_path} holds converted.ckpt, model.ckpt-0.')


# --- scopes -------------------------------------------------------------------------------------


def test_scopes_match_on_boundaries():
    assert checkpoints.parse_scopes(' a/b/, c ,,') == ['a/b', 'c']
    assert checkpoints.in_scopes('ssd/conv1/weights:0', ['ssd/conv1'])
    assert not checkpoints.in_scopes('ssd/conv10/weights', ['ssd/conv1'])
    # A scope may be a whole variable name (one variable excluded or trained), also with `:0`.
    assert checkpoints.in_scopes('ssd/conv1/weights', ['ssd/conv1/weights'])
    assert checkpoints.in_scopes('ssd/conv1/weights:0', ['ssd/conv1/weights'])
    assert checkpoints.rewrite_leading_scope('new', 'new', 'old') == 'old'
    assert checkpoints.rewrite_leading_scope('new/x/new/w', 'new', 'old') == 'old/x/new/w'
    assert checkpoints.rewrite_leading_scope('newer/w', 'new', 'old') == 'newer/w'


def _variables(spec):
    """Creates variables name -> shape with distinct random values; returns dict name -> var."""
    rng = np.random.default_rng(0)
    return {
        name: v1.get_variable(
            name,
            initializer=rng.standard_normal(shape).astype(np.float32),
            collections=[v1.GraphKeys.GLOBAL_VARIABLES, v1.GraphKeys.MODEL_VARIABLES],
        )
        for name, shape in spec.items()
    }


def _save_values(prefix, values):
    """Writes a checkpoint holding exactly `values` (name -> array)."""
    with tf.Graph().as_default():
        variables = {n: v1.get_variable(n, initializer=a) for n, a in values.items()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver(variables).save(sess, prefix)


def _restore(prefix, items, untouched=()):
    """Initialises, reads `untouched` variables, restores; returns (session, their values)."""
    restorer = checkpoints.Restorer(prefix, items)
    sess = v1.Session()
    sess.run(v1.global_variables_initializer())
    before = sess.run(list(untouched))
    restorer.restore(sess)
    return sess, before


def test_model_scope_rewrite_exclude_and_trainable(tmp_path):
    rng = np.random.default_rng(1)
    saved = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in {
            'old/conv1/weights': [3, 2],
            'old/conv10/weights': [2, 2],
            'old/x/new/w': [4],
            'other/w': [1],
        }.items()
    }
    prefix = _save_values(str(tmp_path / 'other_names.ckpt'), saved)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        variables = _variables(
            {'new/conv1/weights': [3, 2], 'new/conv10/weights': [2, 2], 'new/x/new/w': [4]}
        )
        items = checkpoints.plan_restore(
            list(variables.values()), shapes, 'new', 'old', exclude_scopes='new/conv1'
        )
        assert sorted((i.name, i.checkpoint_name) for i in items) == [
            ('new/conv10/weights', 'old/conv10/weights'),
            ('new/x/new/w', 'old/x/new/w'),
        ]
        sess, (before,) = _restore(prefix, items, [variables['new/conv1/weights']])
        np.testing.assert_array_equal(
            sess.run(variables['new/conv10/weights']), saved['old/conv10/weights']
        )
        np.testing.assert_array_equal(sess.run(variables['new/x/new/w']), saved['old/x/new/w'])
        # Excluded: keeps its initialiser.
        np.testing.assert_array_equal(sess.run(variables['new/conv1/weights']), before)
        trainable = checkpoints.filter_variables(
            list(variables.values()), include_scopes='new/conv1,new/x'
        )
        assert [v.op.name for v in trainable] == ['new/conv1/weights', 'new/x/new/w']


def test_missing_variables_fail_or_are_ignored(tmp_path):
    prefix = _save_values(str(tmp_path / 'a.ckpt'), {'m/a': np.ones(2, np.float32)})
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        variables = list(_variables({'m/a': [2], 'm/b': [3]}).values())
        with pytest.raises(ValueError, match='m/b'):
            checkpoints.plan_restore(variables, shapes, 'm')
        warnings = []
        items = checkpoints.plan_restore(
            variables, shapes, 'm', ignore_missing_vars=True, log=warnings.append
        )
        assert [i.name for i in items] == ['m/a']
        # The checkpoint's name only where it differs (it was 'm/b (as m/b)').
        assert warnings == [
            'Not in the checkpoint, left at their initial values: 1 variable(s): m/b'
        ]
        with pytest.raises(ValueError) as info:
            checkpoints.plan_restore(
                variables, shapes, 'm', 'elsewhere', ignore_missing_vars=True, log=warnings.append
            )
        assert str(info.value) == (
            "the checkpoint's variables are under m/, as the model's: leave out "
            "--checkpoint_model_scope=elsewhere (it then finds 1 of the model's 2 variables)."
        )


def _model_variables(model_name, num_classes, **params):
    """The model variables of `model_name`'s net, built in the default graph."""
    from nets import nets_factory
    import tf_slim as slim

    _, network_fn = nets_factory.get_network_fn(model_name, num_classes, **params)
    network_fn(v1.placeholder(tf.float32, [1, 300, 300, 3]))
    return slim.get_model_variables()


def _mobilenet_variables(num_classes, depth_multiplier=0.25):
    return _model_variables('ssd_300_mobilenet', num_classes, depth_multiplier=depth_multiplier)


def _plan_excluding_mismatched(variables, shapes):
    """(restore items, logged warnings) of --exclude_mismatched_vars restoring `variables` of
    ssd_300_mobilenet from a checkpoint of variable shapes `shapes`."""
    warnings = []
    items = checkpoints.plan_restore(
        variables, shapes, 'ssd_300_mobilenet', exclude_mismatched_vars=True, log=warnings.append
    )
    return items, warnings


def test_class_count_change_names_scopes_or_excludes(tmp_path):
    with tf.Graph().as_default():
        variables = _mobilenet_variables(21)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / 'voc21.ckpt'))
            saved = {v.op.name: value for v, value in zip(variables, sess.run(variables))}
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        variables = _mobilenet_variables(7)
        with pytest.raises(ValueError) as info:
            checkpoints.plan_restore(variables, shapes, 'ssd_300_mobilenet')
        message = str(info.value)
        conf_scopes = [
            'ssd_300_mobilenet/%s_mbox_conf' % layer
            for layer in ('conv11', 'conv13', 'conv14_2', 'conv15_2', 'conv16_2', 'conv17_2')
        ]
        assert '--checkpoint_exclude_scopes=' + ','.join(sorted(conf_scopes)) in message
        # Excluding other scopes already: the hint names them too (it read as replacing them).
        with pytest.raises(ValueError) as info:
            checkpoints.plan_restore(
                variables, shapes, 'ssd_300_mobilenet', exclude_scopes='ssd_300_mobilenet/conv17_2/'
            )
        excluding = ['ssd_300_mobilenet/conv17_2'] + sorted(conf_scopes)
        assert '--checkpoint_exclude_scopes=' + ','.join(excluding) + ' or' in str(info.value)
        items, warnings = _plan_excluding_mismatched(variables, shapes)
        skipped = {v.op.name for v in variables} - {i.name for i in items}
        assert skipped == {s + suffix for s in conf_scopes for suffix in ('/weights', '/biases')}
        assert len(warnings) == 1 and 'conv11_mbox_conf/weights' in warnings[0]
        sess, _ = _restore(prefix, items)
        for item, value in zip(items, sess.run([i.variable for i in items])):
            np.testing.assert_array_equal(value, saved[item.name])


def test_a_scope_that_matches_no_variable_is_refused_with_the_closest():
    """A typo in --checkpoint_exclude_scopes restored what it meant to leave out, silently; one in
    --trainable_scopes among others trained the rest."""
    with tf.Graph().as_default():
        variables = _mobilenet_variables(7)
        checkpoints.check_scopes_match(
            '--x', 'ssd_300_mobilenet/conv13/,ssd_300_mobilenet', variables
        )
        checkpoints.check_scopes_match('--x', None, variables)
        with pytest.raises(ValueError) as info:
            checkpoints.check_scopes_match(
                '--checkpoint_exclude_scopes',
                'ssd_300_mobilenet/conv11_mbox_conf,ssd_300_mobilenet/conv11_mbox_cnf,nothing',
                variables,
            )
    assert str(info.value) == (
        '--checkpoint_exclude_scopes: ssd_300_mobilenet/conv11_mbox_cnf (did you mean '
        'ssd_300_mobilenet/conv11_mbox_conf or ssd_300_mobilenet/conv13_mbox_conf?), nothing match '
        'no variable of the model; a scope is a leading part of variable names, such as '
        + variables[-1].op.name.rsplit('/', 1)[0]
        + '.'
    )
    # A scope that begins others' names is completed, not matched to similar ones: --trainable_
    # scopes=ssd_300_vgg/block4 suggested block9 or block8, for the conv4_3 head block4_box.
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match=r'block4 \(did you mean ssd_300_vgg/block4_box\?\)'):
            checkpoints.check_scopes_match(
                '--trainable_scopes', 'ssd_300_vgg/block4', _model_variables('ssd_300_vgg', 3)
            )


def test_excluding_mismatched_variables_of_another_model_says_so_in_short(tmp_path):
    """--exclude_mismatched_vars from a checkpoint of another depth multiplier restored 6
    variables and listed the other 100+ in one 24 KB line; now the listing is cut at 30 and a second
    line says the checkpoint is probably another model."""
    with tf.Graph().as_default():
        _mobilenet_variables(7)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / 'm.ckpt'))
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        variables = _mobilenet_variables(7, depth_multiplier=0.5)
        items, warnings = _plan_excluding_mismatched(variables, shapes)
        mismatched = len(variables) - len(items)
        assert mismatched > len(items) > 0
        assert len(warnings) == 2 and all(len(w) < 8000 for w in warnings)
        assert warnings[0].startswith(
            f'Shapes differ, left at their initial values: {mismatched} variable(s) in '
        )
        assert warnings[0].endswith(f' and {mismatched - 30} more')
        assert warnings[1].startswith(
            f'More variables differ in shape from the checkpoint ({mismatched}) than fit it '
            f'({len(items)}): it is probably another model'
        )


# --- TF-Slim ImageNet backbones -----------------------------------------------------------------


def test_vgg_fc_subsampling_on_real_shapes():
    # Each entry encodes its own (row, col, out) index; zero-stride views keep this at ~0 memory.
    codes = (
        np.arange(7)[:, None, None] * 100000
        + np.arange(7)[None, :, None] * 10000
        + np.arange(4096)[None, None, :]
    ).astype(np.int64)[:, :, None, :]
    fc6 = np.broadcast_to(codes, (7, 7, 512, 4096))
    conv6 = checkpoints.vgg_fc6_to_conv6(fc6)
    assert conv6.shape == (3, 3, 512, 1024)
    for i, r in enumerate((0, 3, 6)):
        for j, c in enumerate((0, 3, 6)):
            np.testing.assert_array_equal(
                conv6[i, j, 7], r * 100000 + c * 10000 + 4 * np.arange(1024)
            )
    # Input channels are kept in order (checked on a small array with per-channel values).
    small = np.random.default_rng(0).standard_normal((7, 7, 5, 8))
    np.testing.assert_array_equal(
        checkpoints.vgg_fc6_to_conv6(small), small[np.ix_([0, 3, 6], [0, 3, 6], range(5), [0, 4])]
    )
    fc7 = np.broadcast_to(
        (np.arange(4096)[:, None] * 10000 + np.arange(4096)[None, :]), (1, 1, 4096, 4096)
    )
    conv7 = checkpoints.vgg_fc7_to_conv7(fc7)
    assert conv7.shape == (1, 1, 1024, 1024)
    np.testing.assert_array_equal(
        conv7[0, 0], (4 * np.arange(1024))[:, None] * 10000 + 4 * np.arange(1024)[None, :]
    )
    np.testing.assert_array_equal(checkpoints.vgg_fc_biases(np.arange(4096)), 4 * np.arange(1024))


def test_vgg_16_checkpoint_initialises_ssd_backbone(tmp_path):
    """A TF-Slim vgg_16 fixture (real names and shapes; fc6 left out to keep it ~70 MB):
    conv layers copy, conv7 is the documented sub-sampling of fc7, the rest is untouched."""
    from nets import nets_factory
    import tf_slim as slim

    rng = np.random.default_rng(2)
    saved = {
        'vgg_16/conv1/conv1_1/weights': rng.standard_normal((3, 3, 3, 64)).astype(np.float32),
        'vgg_16/conv1/conv1_1/biases': rng.standard_normal(64).astype(np.float32),
        'vgg_16/conv5/conv5_3/biases': rng.standard_normal(512).astype(np.float32),
        'vgg_16/fc7/weights': rng.standard_normal((1, 1, 4096, 4096)).astype(np.float32),
        'vgg_16/fc7/biases': rng.standard_normal(4096).astype(np.float32),
        'vgg_16/fc8/weights': np.zeros((1, 1, 4096, 10), np.float32),
    }
    prefix = _save_values(str(tmp_path / 'vgg_16.ckpt'), saved)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        _, network_fn = nets_factory.get_network_fn('ssd_300_vgg', 21)
        network_fn(v1.placeholder(tf.float32, [1, 300, 300, 3]))
        variables = {v.op.name: v for v in slim.get_model_variables()}
        warnings = []
        items = checkpoints.plan_restore(
            list(variables.values()),
            shapes,
            'ssd_300_vgg',
            'vgg_16',
            ignore_missing_vars=True,
            log=warnings.append,
        )
        assert sorted(i.name for i in items) == [
            'ssd_300_vgg/conv1/conv1_1/biases',
            'ssd_300_vgg/conv1/conv1_1/weights',
            'ssd_300_vgg/conv5/conv5_3/biases',
            'ssd_300_vgg/conv7/biases',
            'ssd_300_vgg/conv7/weights',
        ]
        assert 'ssd_300_vgg/conv6/weights (as vgg_16/fc6/weights)' in warnings[0]
        sess, (block8_before,) = _restore(
            prefix, items, [variables['ssd_300_vgg/block8/conv1x1/weights']]
        )
        get = lambda name: sess.run(variables['ssd_300_vgg/' + name])  # noqa: E731
        np.testing.assert_array_equal(
            get('conv1/conv1_1/weights'), saved['vgg_16/conv1/conv1_1/weights']
        )
        np.testing.assert_array_equal(
            get('conv5/conv5_3/biases'), saved['vgg_16/conv5/conv5_3/biases']
        )
        np.testing.assert_array_equal(
            get('conv7/weights'), saved['vgg_16/fc7/weights'][:, :, ::4, ::4]
        )
        np.testing.assert_array_equal(get('conv7/biases'), saved['vgg_16/fc7/biases'][::4])
        np.testing.assert_array_equal(get('block8/conv1x1/weights'), block8_before)
        assert np.abs(block8_before).max() > 0


def test_mobilenet_v1_checkpoint_names(tmp_path):
    """TF-Slim MobilenetV1 names -> ours, on a fixture made with the TF-Slim names."""
    with tf.Graph().as_default():
        ours = {v.op.name: v.shape.as_list() for v in _mobilenet_variables(21)}
    rng = np.random.default_rng(3)
    saved = {'MobilenetV1/Logits/Conv2d_1c_1x1/weights': np.zeros((1, 1, 256, 1001), np.float32)}
    expected = {}
    for name, shape in ours.items():
        relative = name[len('ssd_300_mobilenet/') :]
        layer, rest = relative.split('/', 1)
        number = int(layer[4:]) if layer[4:].isdigit() else None
        if number is None or number > 13:
            continue
        if number == 0:
            tf_slim_name = 'MobilenetV1/Conv2d_0/' + rest
        elif rest.startswith('dw/'):
            tf_slim_name = 'MobilenetV1/Conv2d_%d_depthwise/%s' % (number, rest[3:])
        else:
            tf_slim_name = 'MobilenetV1/Conv2d_%d_pointwise/%s' % (number, rest)
        saved[tf_slim_name] = rng.standard_normal(shape).astype(np.float32)
        expected[name] = tf_slim_name
    assert 'MobilenetV1/Conv2d_13_depthwise/depthwise_weights' in saved
    assert 'MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_variance' in saved
    prefix = _save_values(str(tmp_path / 'mobilenet_v1_0.25_224.ckpt'), saved)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with tf.Graph().as_default():
        variables = _mobilenet_variables(21)
        items = checkpoints.plan_restore(variables, shapes, 'ssd_300_mobilenet', 'MobilenetV1')
        assert {i.name: i.checkpoint_name for i in items} == expected
        sess, _ = _restore(prefix, items)
        for item, value in zip(items, sess.run([i.variable for i in items])):
            np.testing.assert_array_equal(value, saved[item.checkpoint_name])


@pytest.mark.parametrize(
    'record',
    [
        'fifo',
        '[' * 100000,
        '{"model.ckpt-0": 1}',
        '"model.ckpt-0"',
        '["../x", "a/b", 3, "model.ckpt-0.index", "keep-best"]',
    ],
)
def test_an_unreadable_unlisted_record_keeps_what_it_names(tmp_path, record, caplog):
    """The record is read before every chief's (re)start: a FIFO blocked, deep nesting was a
    RecursionError traceback, and a dict's keys were taken as checkpoint names. Unreadable, it
    names nothing (its checkpoints stay on disk) and says so; only the trainer's checkpoint
    names are taken (a planted 'keep-best' had its files deleted)."""
    d = str(tmp_path)
    prefix = _write(d, 'model.ckpt', 0, 0.0, update_state=False)
    path = os.path.join(d, checkpoints.UNLISTED_FILE)
    if record == 'fifo':
        os.mkfifo(path)
    else:
        with open(path, 'w') as f:
            f.write(record)
    with caplog.at_level('WARNING'):
        assert checkpoints.unlist_beyond_newest(d, 2) == []
    assert os.path.exists(prefix + '.index')
    if record.startswith('["../x"'):  # read: none of its names is a trainer's checkpoint
        assert not caplog.records
    else:
        assert f'{path}: the record of unlisted checkpoints ' in caplog.text
        assert 'are kept: remove them and the record by hand' in caplog.text


def test_a_state_file_listing_other_checkpoints_never_makes_a_resume_delete_them(tmp_path):
    """A state file listing a user's checkpoint (`my_best_weights-7`, planted or edited in) before
    the trainer's made a resume with --max_to_keep=1 remove it ('Removed 2 checkpoint(s) ...:
    my_best_weights, model.ckpt-0'). Only the trainer's are rotated; the others are taken off the
    list TF's Saver rotates, and the latest stays the one a resume restores."""
    d = str(tmp_path)
    mine = _write(d, 'my_best_weights', 7, 7.0, update_state=False)
    ours = [_write(d, 'model.ckpt', step, step, update_state=False) for step in (0, 1)]
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-1"\n')
        f.writelines(
            f'all_model_checkpoint_paths: "{os.path.basename(p)}"\n' for p in [mine] + ours
        )
    assert checkpoints.unlist_beyond_newest(d, 1) == [ours[0]]
    state = tf.train.get_checkpoint_state(d)
    assert (state.model_checkpoint_path, list(state.all_model_checkpoint_paths)) == (
        ours[1],
        [ours[1]],
    )
    checkpoints.remove_checkpoints(d, [ours[0]])
    assert all(os.path.exists(mine + ext) for ext in _FILES)
    # The user's checkpoint as the latest: a resume restores it, nothing of it is rotated.
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write(f'model_checkpoint_path: "{os.path.basename(mine)}"\n')
        f.writelines(
            f'all_model_checkpoint_paths: "{os.path.basename(p)}"\n' for p in (ours[1], mine)
        )
    assert checkpoints.unlist_beyond_newest(d, 5) == []
    state = tf.train.get_checkpoint_state(d)
    assert (state.model_checkpoint_path, list(state.all_model_checkpoint_paths)) == (
        mine,
        [ours[1]],
    )
    # A trainer's name in a subfolder is not the trainer's: it was recorded by its name alone,
    # so train_dir's own model.ckpt-9 (unlisted) would have been removed in its place.
    sub = _write(os.path.join(d, 'sub'), 'model.ckpt', 9, 9.0, update_state=False)
    beside = _write(d, 'model.ckpt', 9, 9.0, update_state=False)
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-1"\n')
        f.writelines(
            f'all_model_checkpoint_paths: "{p}"\n' for p in ('sub/model.ckpt-9', 'model.ckpt-1')
        )
    assert checkpoints.unlist_beyond_newest(d, 1) == []
    assert os.path.exists(sub + '.index') and os.path.exists(beside + '.index')


def test_a_lower_max_to_keep_unlists_then_removes_the_oldest_listed_checkpoints(tmp_path):
    """Resumed with a lower --max_to_keep, TF's Saver took over the 5 listed checkpoints and
    removed one per save: the folder kept 4 for ever. The oldest listed ones are unlisted at
    resume and their files removed later (`remove_checkpoints`, after the first save)."""
    d = str(tmp_path)
    prefixes = [_write(d, 'model.ckpt', step, step, update_state=False) for step in (0, 5, 10)]
    unlisted = _write(d, 'model.ckpt', 1, 1.0, update_state=False)  # not TF's to rotate
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-10"\n')
        f.writelines(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in (0, 5, 10))
    open(os.path.join(d, 'model.ckpt-0.model.json'), 'w').close()  # not a checkpoint file
    files = sorted(os.listdir(d))
    assert checkpoints.unlist_beyond_newest(d, 5) == []
    assert checkpoints.unlist_beyond_newest(d, None) == []
    assert checkpoints.unlist_beyond_newest(d, 2) == [prefixes[0]]
    assert sorted(os.listdir(d)) == sorted(files + [checkpoints.UNLISTED_FILE])
    state = tf.train.get_checkpoint_state(d)
    assert state.model_checkpoint_path == prefixes[2]
    assert list(state.all_model_checkpoint_paths) == prefixes[1:]
    # Recorded: a resume that ended before its first save leaves it to the next one.
    assert checkpoints.unlist_beyond_newest(d, 2) == [prefixes[0]]
    assert checkpoints.unlist_beyond_newest(d, None) == [prefixes[0]]
    checkpoints.remove_checkpoints(d, [prefixes[0]])
    checkpoints.remove_checkpoints(d, [prefixes[0]])  # gone already: fine
    assert sorted(os.listdir(d)) == sorted(
        ['checkpoint', 'model.ckpt-0.model.json']
        + [os.path.basename(p) + ext for p in prefixes[1:] + [unlisted] for ext in _FILES]
    )
    assert checkpoints.unlist_beyond_newest(d, 2) == []
    assert checkpoints.unlist_beyond_newest(d, 1) == [prefixes[1]]
    assert checkpoints.latest_in_directory(d) == prefixes[2]
    # Recorded, but listed again (a kill between the record and the state file): kept.
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-10"\n')
        f.writelines(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in (5, 10))
    assert checkpoints.unlist_beyond_newest(d, 2) == []


_FILES = ('.index', '.meta', '.data-00000-of-00001')


def test_a_latest_beyond_max_to_keep_is_replaced_and_removing_spares_longer_steps(tmp_path):
    """A state file whose latest is among the checkpoints beyond --max_to_keep (edited to go
    back to it) names the newest kept one instead, as the old latest is removed after the first
    save.
    Removing model.ckpt-1 leaves model.ckpt-10's and model.ckpt-100's files (a prefix of their
    names)."""
    d = str(tmp_path)
    prefixes = [_write(d, 'model.ckpt', step, step, update_state=False) for step in (1, 10, 100)]
    with open(os.path.join(d, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-1"\n')
        f.writelines(f'all_model_checkpoint_paths: "{os.path.basename(p)}"\n' for p in prefixes)
    assert checkpoints.unlist_beyond_newest(d, 2) == [prefixes[0]]
    state = tf.train.get_checkpoint_state(d)
    assert (state.model_checkpoint_path, list(state.all_model_checkpoint_paths)) == (
        prefixes[2],
        prefixes[1:],
    )
    checkpoints.remove_checkpoints(d, [prefixes[0]])
    assert sorted(os.listdir(d)) == sorted(
        ['checkpoint'] + [os.path.basename(p) + ext for p in prefixes[1:] for ext in _FILES]
    )


def test_checkpoint_step_is_its_global_step_else_its_name_suffix_else_0(tmp_path):
    """The step evaluate's results.json, an export's metadata and a resume record: a renamed
    copy keeps its global_step; without one, the `-<step>` at the end of the name counts (not a
    `-300` inside it); converted weights are step 0."""
    w = {'w': np.zeros(1, np.float32)}
    renamed = _save_values(str(tmp_path / 'model.ckpt-7'), {**w, 'global_step': np.int64(12)})
    assert checkpoints.checkpoint_step(renamed) == 12
    assert checkpoints.checkpoint_step(_save_values(str(tmp_path / 'copy.ckpt-7'), w)) == 7
    converted = _save_values(str(tmp_path / 'ssd-300.ckpt'), w)
    assert checkpoints.checkpoint_step(converted) == 0
    assert checkpoints.checkpoint_step_from_name(converted) is None


def test_fine_tuning_card_names_the_checkpoint_and_another_depth_multiplier(tmp_path):
    import types

    from model import card as card_lib
    from training import trainer

    source = card_lib.from_registry('ssd_300_mobilenet', 4, depth_multiplier=0.25)
    card_lib.write(str(tmp_path / card_lib.CARD_FILE), source)
    prefix = _write(str(tmp_path), 'model.ckpt', 7, 1.0)
    dataset = types.SimpleNamespace(
        name='custom',
        split_name='train',
        dataset_dir=str(tmp_path),
        num_samples=3,
        num_classes=4,
        class_names=card_lib.default_class_names(4),
        metadata=None,
    )
    lines = []
    for depth in (0.25, 0.5):
        settings = trainer.TrainSettings(
            train_dir=str(tmp_path / 'ft'), checkpoint_path=str(tmp_path), depth_multiplier=depth
        )
        card = trainer._new_card(settings, dataset, lines.append)
        assert card.params.depth_multiplier == depth
        # The checkpoint restored, not the folder the flag named.
        assert card.provenance['fine_tuned_from']['checkpoint'] == prefix
    assert lines == [
        f'fine-tuning a model of depth_multiplier 0.25 ({tmp_path}) with --depth_multiplier=0.5: '
        'its backbone and extra layers have other widths and do not fit'
    ]
    # A converted Caffe deploy's settings (MobileNet-SSD's display threshold 0.25) carry over,
    # said: its evaluation read 0.00 mAP without a word.
    deploy = source.with_detection(select_threshold=0.25, top_k=100, keep_top_k=100)
    card_lib.write(str(tmp_path / card_lib.CARD_FILE), deploy)
    lines.clear()
    settings = trainer.TrainSettings(train_dir=str(tmp_path / 'ft'), checkpoint_path=str(tmp_path))
    assert trainer._new_card(settings, dataset, lines.append).detection == deploy.detection
    assert lines == [
        f"the detection settings of the fine-tuned model's card ({tmp_path}) carry over: "
        'select_threshold 0.25, nms_threshold 0.45, top_k 100, keep_top_k 100 (the net\'s '
        'defaults: select_threshold 0.01, nms_threshold 0.45, top_k 400, keep_top_k 200); eval, '
        'export and detect apply them unless their --select_threshold, --nms_threshold, --top_k '
        'or --keep_top_k say otherwise'
    ]


def test_another_steps_output_folder_is_not_a_train_dir(tmp_path):
    """Training started (or resumed: in the watcher's best/) in an eval, export or detection
    folder, mixing its checkpoints with their files."""
    from evaluation import outputs, watcher
    from inference import detection
    from model import card as card_lib

    assert set(checkpoints.OUTPUT_FOLDERS) == {
        watcher.LEDGER_NAME,
        watcher.BEST_JSON,
        outputs.RESULT_FILES[0],
        card_lib.EXPORT_METADATA_FILE,
        detection.DETECTIONS_FILE,
    }
    checkpoints.check_train_dir(str(tmp_path / 'new'))
    checkpoints.check_train_dir(str(tmp_path))
    for name, (what, keys) in checkpoints.OUTPUT_FOLDERS.items():
        folder = tmp_path / name.split('.')[0]
        folder.mkdir()
        # A user's (or an experiment tracker's) file of that name: trained beside, as before.
        (folder / name).write_text('{"experiment": "lr sweep"}\n')
        checkpoints.check_train_dir(str(folder))
        (folder / name).write_text(json.dumps(dict.fromkeys(keys, 1)) + '\n')
        with pytest.raises(ValueError) as info:
            checkpoints.check_train_dir(str(folder))
        # Only the watcher's best/ keeps a model to start from.
        start = (
            'to start from its model, pass it as --checkpoint_path'
            if name == watcher.BEST_JSON
            else 'to start from the model it came from, pass that training folder or '
            'checkpoint as --checkpoint_path'
        )
        assert str(info.value) == (
            f'--train_dir {folder} holds {name}: it is {what}, not a training folder. Train '
            f'into a folder of its own ({start}).'
        )


@pytest.mark.parametrize('file', ['data-00000-of-00001', 'index', 'meta'])
def test_a_checkpoint_that_cannot_be_written_names_the_file_and_why(tmp_path, file):
    """The trainer's Saver: TF's error at a failed save (a full disk, a read-only folder; here a
    folder in the way of one of the checkpoint's files) named the temporary file it wrote,
    `<file>.tempstate<N>` or `<file>.tmp<hex>`, in a traceback. It is a CheckpointWriteError
    (an OSError) naming the checkpoint, the file and the reason."""
    (tmp_path / f'model.ckpt-7.{file}').mkdir()
    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.float32(1))
        with v1.Session() as sess:
            sess.run(w.initializer)
            with pytest.raises(hooks.CheckpointWriteError) as caught:
                hooks.Saver([w]).save(sess, str(tmp_path / 'model.ckpt'), global_step=7)
    assert str(caught.value) == (
        f'{tmp_path}: writing checkpoint model.ckpt-7 failed at model.ckpt-7.{file} '
        '(Is a directory)'
    )


@pytest.mark.parametrize(
    'error', [tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError]
)
def test_a_save_cut_off_by_the_cluster_is_left_to_the_session(tmp_path, monkeypatch, error):
    """A parameter server lost during a save (UnavailableError, AbortedError) is what
    MonitoredSession recovers from with a new session restoring the last checkpoint: the Saver
    made it a CheckpointWriteError, which ended the chief saying to make room on the disk."""

    def lost(*args, **kwargs):
        raise error(None, None, 'Socket closed')

    monkeypatch.setattr(v1.train.Saver, 'save', lost)
    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.float32(1))
        with pytest.raises(error, match='Socket closed'):
            hooks.Saver([w]).save(None, str(tmp_path / 'model.ckpt'), global_step=7)


def test_the_temporary_files_of_an_interrupted_save_are_removed(tmp_path):
    """A save stopped by a kill or a full disk leaves TF's temporary files; the .meta's
    (`<prefix>.meta.tmp<hex>`, written last) stayed after every resume. Files of other names
    stay."""
    hexes = '0123456789abcdef' * 2
    temporary = [
        'model.ckpt-10.data-00000-of-00001.tempstate123',
        'model.ckpt-10.index.tempstate456',
        f'model.ckpt-10.meta.tmp{hexes}',
        f'checkpoint.tmp{hexes}',
    ]
    kept = ['model.ckpt-10.meta', 'model.ckpt-10.meta.tmp-notes', f'notes.meta.tmp{hexes}']
    for name in temporary + kept:
        (tmp_path / name).write_text('x')
    removed = checkpoints.remove_interrupted_saves(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / n) for n in temporary)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
