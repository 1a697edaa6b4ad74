"""A `--checkpoint_path` that is not a checkpoint, or a corrupt `.index`: one line naming the file
and what is wrong (no traceback); an export never writes into a non-empty folder silently."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saver_pb2

from tests.conftest import run_script
from tests import data_fixtures
from tests import inference_fixtures as fx
from inference import export
from model import checkpoints

v1 = tf.compat.v1


@pytest.fixture(scope='module')
def good_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt')
    with tf.Graph().as_default():
        v1.get_variable('w', initializer=np.ones([2, 2], np.float32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(root / 'model.ckpt'), global_step=3)
    return prefix


def test_a_checkpoint_resolves(good_checkpoint):
    assert checkpoints.resolve_checkpoint(good_checkpoint + '.index') == good_checkpoint
    assert checkpoints.resolve_checkpoint(os.path.dirname(good_checkpoint)) == good_checkpoint


def test_not_a_checkpoint_is_one_line(tmp_path):
    path = tmp_path / 'photo.jpg'
    path.write_bytes(b'\xff\xd8\xff\xe0 not a checkpoint at all' * 10)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.resolve_checkpoint(str(path))
    message = str(err.value)
    assert message == (
        f'{path}: not a TensorFlow checkpoint (no photo.jpg.index beside it, and not a V1 '
        "checkpoint file either: its first bytes are not a checkpoint table's)."
    )
    assert isinstance(err.value, ValueError)  # what the scripts report as one line
    # An export's model (a walkthrough: TF's "use a different restore operator" advice).
    graph = tmp_path / 'frozen_graph.pb'
    graph.write_bytes(b'\x0a\x05graph')
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.resolve_checkpoint(str(graph))
    assert str(err.value) == (
        f"{graph}: a frozen graph, not a TensorFlow checkpoint: give the checkpoint it was "
        f"exported from (metadata.json's export.checkpoint.path); eval and detect run it as it "
        f'is (--exported_model={graph}).'
    )


def test_weights_of_caffe_or_pytorch_name_their_converter(tmp_path):
    """A .caffemodel or .pth given as --checkpoint_path (a Caffe user's first try) said only that
    it was no TensorFlow checkpoint; it now names the converter to run first."""
    for name, noun, converter in (
        ('VGG_VOC0712_SSD_300x300_iter_120000.caffemodel', 'a Caffe model', 'caffe_to_tensorflow'),
        ('ssd300_mAP_77.43_v2.pth', 'a PyTorch file', 'pytorch_to_tensorflow'),
    ):
        path = tmp_path / name
        path.write_bytes(b'\x0a\x0bVGG_VOC0712' + bytes(40))
        with pytest.raises(checkpoints.CheckpointError) as err:
            checkpoints.resolve_checkpoint(str(path))
        assert str(err.value) == (
            f'{path}: {noun}, not a TensorFlow checkpoint: convert it with {converter}.py first '
            '(README.md, "Pretrained weights", gives the command for each published model) and '
            'pass the checkpoint it writes.'
        )


def test_corrupt_index_is_one_line(good_checkpoint, tmp_path):
    prefix = str(tmp_path / 'model.ckpt-3')
    for name in os.listdir(os.path.dirname(good_checkpoint)):
        if name.startswith('model.ckpt-3.'):
            shutil.copy(os.path.join(os.path.dirname(good_checkpoint), name), tmp_path)
    with open(prefix + '.index', 'r+b') as f:  # a truncated copy
        f.truncate(20)
    for given in (prefix, prefix + '.index', str(tmp_path)):
        with pytest.raises(checkpoints.CheckpointError) as err:
            checkpoints.resolve_checkpoint(given)
        assert str(err.value).startswith(f'{prefix}.index: not a readable checkpoint index')
        assert '\n' not in str(err.value)


@pytest.mark.parametrize('name', ['model.ckpt-3.index', 'model.ckpt-3.data-00000-of-00001'])
def test_a_checkpoint_file_that_is_a_fifo_is_refused_unread(
    good_checkpoint, tmp_path, name, fifo_release
):
    # A checkpoint unpacked from an archive can hold a FIFO: TF's readers opened it and waited
    # for a writer forever (detect, eval, export, a training's resume or start, the watcher).
    folder = tmp_path / 'train'
    shutil.copytree(os.path.dirname(good_checkpoint), folder)
    fifo = folder / name
    fifo.unlink()
    os.mkfifo(fifo)
    fifo_release(str(fifo))
    prefix = str(folder / 'model.ckpt-3')
    problem = (
        f'{fifo} is a FIFO (named pipe), not a regular file; a checkpoint is read from regular '
        "files only: put the checkpoint's files there, or use another checkpoint."
    )
    for path in (str(folder), prefix):
        with pytest.raises(checkpoints.CheckpointError) as err:
            checkpoints.resolve_checkpoint(path)
        assert str(err.value) == problem
    with pytest.raises(ValueError) as err:
        checkpoints.resume_checkpoint(str(folder))
    assert (
        str(err.value)
        == f'--train_dir {folder}: its latest checkpoint cannot be resumed: {problem}'
    )
    with pytest.raises(checkpoints.CheckpointUnavailable) as err:
        checkpoints.stage_checkpoint(prefix, str(tmp_path / 'staged'))
    assert str(err.value) == problem
    assert os.listdir(tmp_path / 'staged') == []
    assert not fifo_release.fired()


def test_a_v1_checkpoint_file_that_is_a_fifo_or_a_broken_link_is_named(tmp_path, fifo_release):
    """A V1 checkpoint is one file (`vgg_16.ckpt`): one that was a FIFO or a broken link was
    reported as 'no checkpoint at ...', which sends a user looking for a missing file."""
    fifo = tmp_path / 'vgg_16.ckpt'
    os.mkfifo(fifo)
    fifo_release(str(fifo))
    link = tmp_path / 'resnet.ckpt'
    os.symlink(tmp_path / 'gone.ckpt', link)
    for path, what in ((fifo, 'a FIFO (named pipe)'), (link, 'a broken or looping symlink')):
        with pytest.raises(checkpoints.CheckpointError) as err:
            checkpoints.resolve_checkpoint(str(path))
        assert str(err.value).startswith(f'{path} is {what}, not a regular file; ')
    assert not fifo_release.fired()


def test_a_meta_file_names_its_checkpoint(good_checkpoint, tmp_path):
    """TF1 users pass the graph file `<prefix>.meta`: it was read as a V1 checkpoint ("not an
    sstable (bad magic number)"). It names its prefix, as `.index` does; without weights beside
    it the error names the prefix to pass."""
    assert checkpoints.resolve_checkpoint(good_checkpoint + '.meta') == good_checkpoint
    v1_file = str(tmp_path / 'vgg_16.ckpt')
    with tf.Graph().as_default():
        v1.get_variable('w', initializer=np.ones([2], np.float32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(write_version=saver_pb2.SaverDef.V1).save(sess, v1_file)
    assert checkpoints.resolve_checkpoint(v1_file + '.meta') == v1_file
    alone = tmp_path / 'alone'
    alone.mkdir()
    shutil.copy(good_checkpoint + '.meta', alone / 'model.ckpt-3.meta')
    prefix = str(alone / 'model.ckpt-3')
    with pytest.raises(FileNotFoundError) as err:
        checkpoints.resolve_checkpoint(prefix + '.meta')
    assert str(err.value) == (
        f'no checkpoint at {prefix}.meta: a .meta file holds the graph, not the weights; pass the '
        f'prefix {prefix}, with its .index and .data-* files (or the V1 checkpoint file '
        f'{prefix}) beside it.'
    )


def test_an_export_folder_is_not_called_a_folder_without_checkpoints(tmp_path):
    (tmp_path / 'metadata.json').write_text('{}')
    (tmp_path / 'frozen_graph.pb').write_bytes(b'graph')
    with pytest.raises(FileNotFoundError) as err:
        checkpoints.resolve_checkpoint(str(tmp_path))
    assert str(err.value) == (
        f'{tmp_path} is an export folder of export_ssd_network.py (it holds metadata.json), not a '
        f"checkpoint: give the checkpoint it was exported from (metadata.json's "
        f'export.checkpoint.path); eval and detect also run its model files '
        f'(--exported_model=<file>).'
    )


def test_a_saved_model_folder_is_named_as_such(tmp_path):
    """eval --checkpoint_path=export/saved_model said 'a directory without checkpoints'."""
    saved = tmp_path / 'export' / 'saved_model'
    (saved / 'variables').mkdir(parents=True)
    (saved / 'saved_model.pb').write_bytes(b'graph')
    (saved / 'variables' / 'variables.index').write_bytes(b'index')
    for parent_has_metadata in (False, True):
        if parent_has_metadata:
            (tmp_path / 'export' / 'metadata.json').write_text('{}')
        with pytest.raises(FileNotFoundError) as err:
            checkpoints.resolve_checkpoint(str(saved))
        where = (
            f" (metadata.json's export.checkpoint.path in {tmp_path / 'export'})"
            if parent_has_metadata
            else ''
        )
        assert str(err.value) == (
            f'{saved} is a SavedModel folder (it holds saved_model.pb), not a checkpoint: give '
            f'the checkpoint it was exported from{where}; eval and detect also run the '
            f'SavedModel itself (--exported_model={saved}).'
        )


def test_script_says_it_in_one_line(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('these are my notes, not a checkpoint\n')
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={path}',
        f'--output_dir={tmp_path / "out"}',
        '--formats=frozen_graph',
        '--model_name=ssd_300_mobilenet',
        '--num_classes=3',
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f'export_ssd_network: error: {path}: not a TensorFlow checkpoint '
        + proc.stderr.split('not a TensorFlow checkpoint ', 1)[1].rstrip('\n')
    ], proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'out').exists()


def test_export_with_a_mistyped_format_says_it_in_one_line(tmp_path):
    """--formats=tflite was a KeyError traceback: the output folder's check looked up the file
    names of the formats before they were checked."""
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'frozen_graph.pb').write_text('not ours')  # a non-empty folder: its check ran first
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={tmp_path}',
        f'--output_dir={out}',
        '--formats=frozen_graph,tflite',
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "export_ssd_network: error: --formats: unknown format 'tflite' (did you mean "
        'tflite_int8 or tflite_float?); the formats are frozen_graph, saved_model, tflite_float, '
        'tflite_int8, openvino, openvino_int8.'
    )
    with pytest.raises(ValueError, match=r"unknown format 'savedmodel' \(did you mean saved_m"):
        export.check_formats(['savedmodel'])
    with pytest.raises(ValueError, match=r"unknown format 'onnx'; the formats are"):
        export.check_formats(['frozen_graph', 'onnx'])
    with pytest.raises(ValueError, match=r'--formats is empty'):
        export.check_formats([])
    # Exported (and logged) twice before.
    with pytest.raises(ValueError) as err:
        export.check_formats(['frozen_graph', 'tflite_float', 'frozen_graph'])
    assert str(err.value) == '--formats names frozen_graph more than once; name each once.'


def test_export_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / 'thesis'
    out.mkdir()
    (out / 'chapter1.tex').write_text('years of work')
    with pytest.raises(
        export.OutputNotEmptyError,
        match=r'thesis is not empty \(chapter1.tex\)'
        r'; refusing to write into it.*--overwrite to write anchors.npy, '
        r'frozen_graph.pb, metadata.json there beside chapter1.tex, which stays',
    ):
        export.export(None, 'unused', str(out), formats=['frozen_graph'])
    assert os.listdir(out) == ['chapter1.tex']
    export.check_output_dir(str(out), ['frozen_graph'], overwrite=True)  # asked for: allowed
    export.check_output_dir(str(tmp_path / 'new'), ['frozen_graph'])  # a new folder: fine


def test_damaged_data_files_are_one_line_naming_the_users_checkpoint(tmp_path):
    """A truncated or missing .data file (a copy taken while the trainer wrote it): detect,
    export and eval say so in one line naming the checkpoint the user gave (export reads a hidden
    staged copy), where TF's restore error was a traceback of 100-170 lines. (A checkpoint of
    another shape names the user's checkpoint too, not the staged copy:
    test_export_names_the_model_card_given_when_the_checkpoint_does_not_fit_it.)"""
    spec = fx.small_spec()
    records = fx.write_synthetic_split(str(tmp_path / 'data'), 8)
    images = tmp_path / 'images'  # detect refuses a folder without images before the checkpoint
    data_fixtures.write_image(str(images / 'im.png'), fx.random_images(0, [(90, 120)])[0], '.png')
    flags = [
        '--model_name=ssd_300_mobilenet',
        '--depth_multiplier=0.25',
        f'--num_classes={fx.NUM_CLASSES}',
    ]
    data = ['--dataset_name=custom', '--dataset_split_name=test', f'--dataset_dir={records}']
    runs = {
        'detect_ssd_network.py': [f'--input={images}', f'--output_dir={tmp_path / "det"}'],
        'export_ssd_network.py': ['--formats=frozen_graph', f'--output_dir={tmp_path / "ex"}'],
        'eval_ssd_network.py': [f'--eval_dir={tmp_path / "ev"}', *data],
    }
    # Detect and eval restore the user's checkpoint itself, where either damage is TF's error
    # of the same restore (model/checkpoints.restore): one damage each. Export stages a copy,
    # which a missing file stops before the restore.
    for script, damage in (
        ('detect_ssd_network.py', 'truncated'),
        ('eval_ssd_network.py', 'missing'),
        ('export_ssd_network.py', 'truncated'),
        ('export_ssd_network.py', 'missing'),
    ):
        prefix = fx.write_checkpoint(spec, str(tmp_path / f'{script}_{damage}'))
        shard = prefix + '.data-00000-of-00001'
        if damage == 'truncated':
            os.truncate(shard, os.path.getsize(shard) // 2)
        else:
            os.remove(shard)
        proc = run_script(script, f'--checkpoint_path={prefix}', *flags, *runs[script])
        errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
        assert 'Traceback' not in proc.stderr, (script, proc.stderr[-3000:])
        reason = {
            'truncated': 'restoring failed (Read less bytes than requested)',
            'missing': f'restoring failed ({shard}; No such file or directory)',
        }[damage]
        if (script, damage) == ('export_ssd_network.py', 'missing'):
            reason = 'no .data-* file next to the .index'
        assert f'error: {prefix}: {reason}' in errors[0], (script, errors)


def test_a_global_step_of_several_values_is_a_clear_error(tmp_path):
    with tf.Graph().as_default():
        v1.get_variable('global_step', initializer=np.array([1, 2], np.int64))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'))
    with pytest.raises(checkpoints.CheckpointUnavailable, match='global_step is not one integer'):
        checkpoints.checkpoint_step(prefix)


def test_restore_failures_other_than_damaged_files_are_not_called_damage(tmp_path):
    """A variable of another dtype (same shape: check_restorable passes) is a ValueError with TF's
    reason, not 'damaged files' (which the watcher records as unavailable and skips)."""
    with tf.Graph().as_default():
        v1.get_variable('w', initializer=np.ones([2], np.float64))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'))
    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.ones([2], np.float32))
        checkpoints.check_restorable(prefix, {'w': w})
        with v1.Session() as sess:
            with pytest.raises(ValueError) as err:
                checkpoints.restore(v1.train.Saver({'w': w}), sess, prefix)
    # TF's message: the Saver's guess, a header, where the node was defined, then the reason.
    assert str(err.value) == (
        f'{prefix}: restoring failed (InvalidArgumentError: tensor_name = w; expected dtype float '
        f'does not equal original dtype double).'
    )


def test_errors_of_a_staged_copy_name_the_users_checkpoint(tmp_path):
    staged, prefix = str(tmp_path / '.staged.tmp-1-x' / 'model.ckpt-5'), 'train/model.ckpt-5'
    for error in (checkpoints.CheckpointUnavailable, ValueError):
        with pytest.raises(error) as err:
            with checkpoints.errors_naming(staged, prefix):
                raise error(f'{staged}: restoring failed (reason).')
        assert str(err.value) == 'train/model.ckpt-5: restoring failed (reason).'


def _saved(path, names):
    """Saves float32 [2] variables of these names (and a global_step) as a checkpoint."""
    with tf.Graph().as_default():
        for name in names:
            v1.get_variable(name, initializer=np.ones([2], np.float32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver().save(sess, str(path))


@pytest.mark.parametrize(
    'saved, wanted, hint',
    [
        # Resumed with another optimizer: Momentum's slots where the training kept Adam's.
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/w/Adam_1', 'beta1_power'],
            ['global_step', 'net/w', 'net/w/Momentum'],
            'they are the optimizer\'s state: the checkpoint was trained with another --optimizer '
            '(its slots: Adam, Adam_1); resume with that one, or start a new --train_dir with '
            '--checkpoint_path',
        ),
        # Adam's own powers count as its state too.
        (
            ['global_step', 'net/w', 'net/w/Momentum'],
            ['global_step', 'net/w', 'beta1_power'],
            'they are the optimizer\'s state: the checkpoint was trained with another --optimizer '
            '(its slots: Momentum)',
        ),
        # Same optimizer, a variable the first run did not train (--trainable_scopes).
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/b'],
            ['global_step', 'net/w', 'net/w/Adam', 'net/b', 'net/b/Adam'],
            'they are optimizer slots of variables the checkpoint\'s training did not train: resume with '
            'its --trainable_scopes',
        ),
        # Converted or classification weights in the folder a training resumes.
        (['net/w'], ['global_step', 'net/w', 'net/w/Adam'], 'it has no global_step'),
        (['global_step', 'net/w'], ['global_step', 'net/w', 'net/v'], 'check --model_name'),
    ],
)
def test_missing_variables_name_what_differs(tmp_path, saved, wanted, hint):
    prefix = _saved(tmp_path / 'model.ckpt', saved)
    with tf.Graph().as_default():
        var_map = {n: v1.get_variable(n, initializer=np.ones([2], np.float32)) for n in wanted}
        with pytest.raises(ValueError) as err:
            checkpoints.check_restorable(prefix, var_map)
    missing = sorted(set(wanted) - set(saved))
    assert f'{len(missing)} variable(s) missing (e.g. {missing[:3]}); {hint}' in str(err.value)


@pytest.mark.parametrize(
    'saved, wanted, hint',
    [
        (
            ['global_step', 'net/w', 'net/w/ExponentialMovingAverage'],
            ['global_step', 'net/w'],
            'its moving averages: resume with its --moving_average_decay',
        ),
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/b', 'net/b/Adam'],
            ['global_step', 'net/w', 'net/w/Adam', 'net/b'],
            'the optimizer state of variables this run would not train: resume with the '
            '--trainable_scopes it was trained with (none where it trained every variable)',
        ),
        # Resumed with an optimizer of fewer or no slots (sgd), not a narrower scope.
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/w/Adam_1', 'beta1_power'],
            ['global_step', 'net/w'],
            'the state of its optimizer (slots: Adam, Adam_1), which this run\'s --optimizer does '
            'not keep: resume with its --optimizer',
        ),
        (
            ['global_step', 'net/w', 'beta2_power'],
            ['global_step', 'net/w'],
            'the state of its optimizer (slots: none), which this run\'s --optimizer does not '
            'keep: resume with its --optimizer',
        ),
        (
            ['global_step', 'net/w', 'other/v'],
            ['global_step', 'net/w'],
            'variables this model does not have: check --model_name',
        ),
    ],
)
def test_a_resume_that_would_drop_variables_of_the_checkpoint_is_refused(
    tmp_path, saved, wanted, hint
):
    """Its Saver writes only the graph's variables, and TF re-saves the resumed step at start:
    the dropped ones were lost from that checkpoint in place."""
    prefix = _saved(tmp_path / 'model.ckpt', saved)
    with tf.Graph().as_default():
        var_map = {n: v1.get_variable(n, initializer=np.ones([2], np.float32)) for n in wanted}
        checkpoints.check_restorable(prefix, var_map)  # the other way round, all is there
        with pytest.raises(ValueError) as err:
            checkpoints.check_resumable(prefix, var_map)
    dropped = sorted(set(saved) - set(wanted))
    assert str(err.value) == (
        f'{prefix}: this run would drop {len(dropped)} of its variables from it and from later '
        f'checkpoints (e.g. {dropped[:3]}), {hint}, or start a new --train_dir with '
        f'--checkpoint_path={prefix} to fine-tune from its weights.'
    )


ADAM = ['global_step', 'net/w', 'net/w/Adam', 'net/w/Adam_1', 'beta1_power']


@pytest.mark.parametrize(
    'saved, wanted, trained, hint',
    [
        (
            ['global_step', 'net/w', 'net/w/ExponentialMovingAverage'],
            ['global_step', 'net/w'],
            {'moving_average_decay': 0.9999},
            'its moving averages: resume with --moving_average_decay=0.9999',
        ),
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/b', 'net/b/Adam'],
            ['global_step', 'net/w', 'net/w/Adam', 'net/b'],
            {'trainable_scopes': None},
            'the optimizer state of variables this run would not train: resume without '
            '--trainable_scopes',
        ),
        (ADAM, ['global_step', 'net/w'], {'optimizer': 'adam'}, 'resume with --optimizer=adam'),
        # The checkpoint lacks what this run has.
        (
            ['global_step', 'net/w', 'net/w/Adam', 'net/b'],
            ['global_step', 'net/w', 'net/w/Adam', 'net/b', 'net/b/Adam'],
            {'trainable_scopes': 'net/w,other'},
            "did not train: resume with --trainable_scopes=net/w,other, or start a new",
        ),
        (
            ADAM,
            ['global_step', 'net/w', 'net/w/Momentum'],
            {'optimizer': 'adam'},
            '(its slots: Adam, Adam_1); resume with --optimizer=adam, or start a new',
        ),
    ],
)
def test_a_refused_resume_names_the_value_its_card_records(tmp_path, saved, wanted, trained, hint):
    """The refusal said "resume with its --trainable_scopes" while the card (model.json) held the
    value, e.g. a 12-scope list the user had to rebuild."""
    prefix = _saved(tmp_path / 'model.ckpt', saved)
    with tf.Graph().as_default():
        var_map = {n: v1.get_variable(n, initializer=np.ones([2], np.float32)) for n in wanted}
        with pytest.raises(ValueError) as err:
            checkpoints.check_resumable(prefix, var_map, 'train/model.json', trained)
    assert hint in str(err.value), str(err.value)


def test_the_fp16_loss_scale_may_be_dropped(tmp_path):
    """It re-learns itself in a few steps: a GPU fp16 run resumed in float32 goes on."""
    prefix = _saved(tmp_path / 'model.ckpt', ['global_step', 'net/w', 'current_loss_scale'])
    with tf.Graph().as_default():
        var_map = {
            n: v1.get_variable(n, initializer=np.ones([2], np.float32))
            for n in ['global_step', 'net/w']
        }
        checkpoints.check_resumable(prefix, var_map)


def test_a_resume_without_the_fp16_loss_scale_names_mixed_precision(tmp_path):
    prefix = _saved(tmp_path / 'model.ckpt', ['global_step', 'net/w'])
    with tf.Graph().as_default():
        var_map = {
            n: v1.get_variable(n, initializer=np.ones([2], np.float32))
            for n in ['global_step', 'net/w', 'current_loss_scale', 'good_steps']
        }
        with pytest.raises(ValueError, match='resume without --mixed_precision here'):
            checkpoints.check_restorable(prefix, var_map)


@pytest.mark.parametrize(
    'name, flag',
    [
        ('ssd_300_vgg/block4_box/conv_cls/biases', '--num_classes'),
        ('ssd_300_vgg/block4_box/conv_loc/weights', '--anchor_sizes'),
        ('ssd_300_vgg/block8/conv1x1/weights', '--depth_multiplier or --model_name'),
        ('ssd_300_mobilenet/conv11_mbox_conf/weights', '--num_classes'),
        ('ssd_300_mobilenet/conv11_mbox_loc/biases', '--anchor_sizes'),
        ('ssd_300_mobilenet/conv13/dw/depthwise_weights', '--depth_multiplier or --model_name'),
    ],
)
def test_the_flag_named_for_a_shape_that_differs(name, flag):
    """Every VGG head and extra layer was blamed on the anchors: 'loc' is in 'block'."""
    assert checkpoints.likely_flag(name).startswith(flag)


def test_export_names_the_model_card_given_when_the_checkpoint_does_not_fit_it(tmp_path):
    """export --model_card=<another model's card>: the refusal said 'the model built from the
    flags (no model card was found ...)' although the card was read, and named it."""
    from model import card as card_lib
    from tests import eval_fixtures

    names = ['a', 'b']
    prefix = eval_fixtures.write_random_checkpoint(
        str(tmp_path / 'train' / 'model.ckpt'), 'ssd_300_mobilenet', 3, 5, depth_multiplier=0.25
    )
    other = card_lib.write(
        str(tmp_path / 'other.json'), eval_fixtures.small_card('ssd_300_mobilenet', names, 0.5)
    )
    out = tmp_path / 'out'
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={prefix}',
        f'--model_card={other}',
        '--formats=frozen_graph',
        f'--output_dir={out}',
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    # Also what the damaged-files test asked of a checkpoint of another shape: the user's named.
    assert f'error: {prefix} does not fit the model built from the model card {other}:' in (
        proc.stderr
    )
    assert 'no model card was found' not in proc.stderr
    assert not out.exists() or not [n for n in os.listdir(out) if not n.startswith('.')]
