"""Refusals of detect, eval, export and train that a user walkthrough found late or misleading:
each is now one line naming the flag and what to do, given before a model loads and before the
script's output folder is created or written.

- detect: an --input entry that does not exist (typo, a glob matching nothing) was reported as an
  unreadable file after the model loaded, and an empty detections.json written; a named file
  that is not an image left an empty detections.json too (now: nothing written); a model flag
  given an export's folder did not say which file in it to pass.
- export: a non-empty --output_dir without an earlier export: the refusal said --overwrite would
  replace files and remove other formats (it replaces nothing there); the int8 formats calibrated
  on the test split unless told otherwise (now train).
- eval, export: a detection setting out of range was refused after the line saying it replaced
  the card's; eval's unknown --metrics after the card loaded, without the flag's name or a
  suggestion.
- all four scripts: a --model_name or --anchor_sizes typo was refused late, without "did you
  mean".

The scripts run as child processes (`run_script`), never imported here.
"""

import hashlib
import json
import os
import shutil

import pytest

from datasets import dataset_factory
from inference import export
from model import card as card_lib
from model import cli
from tests import data_fixtures
from tests import inference_fixtures as fx
from tests.conftest import run_python, run_script

NETS = 'ssd_300_mobilenet, ssd_300_vgg, ssd_512_vgg'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A checkpoint with its model card (no model flags needed), its frozen graph exported by the
    script, and a folder of two images."""
    root = tmp_path_factory.mktemp('refusals')
    spec = fx.small_spec()
    prefix = fx.write_checkpoint(spec, str(root / 'train'))
    card_lib.write(str(root / 'train' / 'model.json'), spec)
    images = root / 'images'
    for i, image in enumerate(fx.random_images(3, [(90, 120), (64, 80)])):
        data_fixtures.write_image(str(images / f'img{i}.jpg'), image, '.jpg')
    exported = root / 'export'
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={prefix}',
        '--formats=frozen_graph',
        f'--output_dir={exported}',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(root=root, prefix=prefix, train=root / 'train', images=images, export=exported)


@pytest.fixture(scope='module')
def agreeing_run(setup):
    """detect on the frozen graph with a model flag its card agrees with, into a new folder:
    (process, the folder)."""
    out = setup['root'] / 'detected'
    proc = run_script(
        'detect_ssd_network.py',
        f'--exported_model={setup["export"]}/frozen_graph.pb',
        '--model_name=ssd_300_mobilenet',
        f'--input={setup["images"]}',
        f'--output_dir={out}',
    )
    return proc, out


def _files(folder):
    """{relative path: sha256} of the files under `folder`."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def _refused(proc, line):
    """The run failed with exactly `line` on stderr."""
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines() == [line], proc.stderr[-3000:]


# detect_ssd_network.py --input


def test_detect_refuses_an_input_that_does_not_exist_before_loading_the_model(setup, tmp_path):
    """A typo in a folder name loaded the model, said 'skipped ... cannot read the file', then
    'no image processed (1 failed)', and left --output_dir with an empty detections.json."""
    graph = f'--frozen_graph={setup["export"]}/frozen_graph.pb'
    out = tmp_path / 'det'
    photo = f'{tmp_path}/photo/'
    proc = run_script('detect_ssd_network.py', graph, f'--input={photo}', f'--output_dir={out}')
    _refused(
        proc,
        f'detect_ssd_network: error: --input: {photo} (no such file or folder); correct the '
        f'path or leave it out of --input (comma-separated image and video files, folders and '
        f'globs).',
    )
    assert proc.stdout == '' and not out.exists()  # no model line: nothing loaded
    # Beside inputs that exist, each entry naming nothing is named, a glob matching no file too.
    spec = f'{setup["images"]},{tmp_path}/*.png,{tmp_path}/img9.jpg'
    proc = run_script('detect_ssd_network.py', graph, f'--input={spec}', f'--output_dir={out}')
    _refused(
        proc,
        f'detect_ssd_network: error: --input: {tmp_path}/*.png (the pattern matches no file); '
        f'{tmp_path}/img9.jpg (no such file or folder); correct the path or leave it out of '
        f'--input (comma-separated image and video files, folders and globs).',
    )
    assert proc.stdout == '' and not out.exists()


def test_detect_writes_nothing_when_no_named_file_is_an_image(setup, agreeing_run, tmp_path):
    """A text file renamed .jpg, named alone: it is read (after the model loads) and skipped, and
    with no image processed nothing is written: no empty detections.json reading as a run that
    found nothing, no new --output_dir, an earlier run's detections.json left as it was."""
    graph = f'--frozen_graph={setup["export"]}/frozen_graph.pb'
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image\n')
    out = tmp_path / 'det'
    proc = run_script('detect_ssd_network.py', graph, f'--input={text}', f'--output_dir={out}')
    reason = (
        f'{text}: not a decodable image (13 bytes: neither JPEG, PNG nor another format whose '
        f'header Pillow reads; UnidentifiedImageError).'
    )
    _refused(
        proc,
        f'detect_ssd_network: error: no image processed (1 failed), nothing written to '
        f'{out}: {reason}',
    )
    # Said once: the error line (a 'skipped' line repeated it).
    assert reason not in proc.stdout and not out.exists()

    # An earlier run's folder (a module fixture: this run must leave it as it is).
    proc, out = agreeing_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = _files(out)
    assert sorted(before) == ['detections.json', 'img0_det.jpg', 'img1_det.jpg']
    proc = run_script('detect_ssd_network.py', graph, f'--input={text}', f'--output_dir={out}')
    assert proc.returncode == 1 and 'nothing written to' in proc.stderr
    assert _files(out) == before


# detect_ssd_network.py: a folder given to a model flag


@pytest.mark.parametrize(
    'flag, fix',
    [
        (
            'frozen_graph',
            'is an export folder, not a frozen graph file (.pb); pass --frozen_graph=',
        ),
        (
            'tflite_model',
            'is an export folder, not a TFLite model file (.tflite): it holds none; pass '
            '--frozen_graph=',
        ),
        (
            'saved_model_dir',
            'is an export folder, not a SavedModel folder: it holds none; pass --frozen_graph=',
        ),
        (
            'exported_model',
            'is an export folder, not a model file or SavedModel folder; pass --exported_model=',
        ),
    ],
)
def test_detect_names_the_model_file_in_a_folder(setup, tmp_path, flag, fix):
    """`--frozen_graph=export/mine` said only 'the frozen graph is a directory, not a regular
    file'; eval names the file to pass, and so does detect now, for each model flag."""
    folder = setup['export']
    out = tmp_path / 'det'
    proc = run_script(
        'detect_ssd_network.py',
        f'--{flag}={folder}',
        f'--input={setup["images"]}',
        f'--output_dir={out}',
    )
    _refused(proc, f'detect_ssd_network: error: --{flag}={folder} {fix}{folder}/frozen_graph.pb.')
    assert proc.stdout == '' and not out.exists()


def test_detect_names_the_flag_of_a_saved_model_or_a_model_file(setup, tmp_path):
    """The reverse: a SavedModel folder to a file flag, a file to --saved_model_dir."""
    saved = tmp_path / 'saved_model'
    saved.mkdir()
    (saved / 'saved_model.pb').write_bytes(b'')
    graph = f'{setup["export"]}/frozen_graph.pb'
    out = tmp_path / 'det'
    common = [f'--input={setup["images"]}', f'--output_dir={out}']
    proc = run_script('detect_ssd_network.py', f'--frozen_graph={saved}', *common)
    _refused(
        proc,
        f'detect_ssd_network: error: --frozen_graph={saved} is a SavedModel folder, not a '
        f'frozen graph file (.pb); pass --saved_model_dir={saved} (or --exported_model={saved}).',
    )
    proc = run_script('detect_ssd_network.py', f'--saved_model_dir={graph}', *common)
    _refused(
        proc,
        f'detect_ssd_network: error: --saved_model_dir={graph} is a file, not a SavedModel '
        f'folder; pass --frozen_graph={graph}.',
    )
    assert not out.exists()


def test_a_saved_models_graph_file_or_a_missing_export_names_what_to_pass(setup, tmp_path):
    """A SavedModel's saved_model.pb given as a model file: detect told to pass it as
    --frozen_graph, and eval read it as a corrupt frozen graph. eval's missing --exported_model
    was a bare `[Errno 2]` line (a folder name: "not a model eval evaluates by its file type");
    a frozen graph copied without its metadata.json, `[Errno 2]` with the absolute path (it
    now has its card inside)."""
    saved = tmp_path / 'saved_model'
    (saved / 'variables').mkdir(parents=True)
    (saved / 'saved_model.pb').write_bytes(b'graph')
    graph_file = saved / 'saved_model.pb'
    out, eval_dir = tmp_path / 'det', tmp_path / 'eval'
    detect = [f'--input={setup["images"]}', f'--output_dir={out}']
    for flag in ('frozen_graph', 'saved_model_dir', 'exported_model'):
        proc = run_script('detect_ssd_network.py', f'--{flag}={graph_file}', *detect)
        _refused(
            proc,
            f'detect_ssd_network: error: --{flag}={graph_file} is the graph file of the '
            f'SavedModel folder {saved}; pass --saved_model_dir={saved} (or '
            f'--exported_model={saved}).',
        )
    evaluate = [f'--eval_dir={eval_dir}', f'--dataset_dir={tmp_path}']
    proc = run_script('eval_ssd_network.py', f'--exported_model={graph_file}', *evaluate)
    _refused(
        proc,
        f'eval_ssd_network: error: {graph_file} is the graph file of the SavedModel folder '
        f'{saved}; pass --exported_model={saved}.',
    )
    for missing in ('nope.pb', 'nope'):
        proc = run_script(
            'eval_ssd_network.py', f'--exported_model={tmp_path / missing}', *evaluate
        )
        _refused(
            proc,
            f'eval_ssd_network: error: --exported_model={tmp_path / missing}: no such file or '
            f'folder; pass an OpenVINO model file (.xml), a frozen graph file (.pb), a TFLite '
            f'model file (.tflite) or a SavedModel folder.',
        )
    # Alone, a frozen graph is read with the card inside it (named as the card); one of an
    # export older than those cards is refused.
    lone = tmp_path / 'lone'
    lone.mkdir()
    shutil.copy(setup['export'] / 'frozen_graph.pb', lone)
    proc = run_script(
        'detect_ssd_network.py',
        f'--frozen_graph={lone}/frozen_graph.pb',
        '--model_name=ssd_300_vgg',
        *detect,
    )
    _refused(
        proc,
        f'detect_ssd_network: error: --model_name=ssd_300_vgg contradicts the model card '
        f'{lone}/frozen_graph.pb, which says ssd_300_mobilenet. Drop --model_name (the card '
        'describes the model), or export a checkpoint trained with it (export_ssd_network.py) to '
        'use --model_name=ssd_300_vgg.',
    )
    fx.remove_embedded_card(lone / 'frozen_graph.pb')
    proc = run_script('detect_ssd_network.py', f'--frozen_graph={lone}/frozen_graph.pb', *detect)
    _refused(
        proc,
        f'detect_ssd_network: error: {lone}/frozen_graph.pb: no metadata.json beside it and no '
        'model card in the frozen graph (an export older than the cards inside models); copy the '
        'metadata.json export_ssd_network.py wrote with it next to it, or export the model again.',
    )
    assert not out.exists() and not eval_dir.exists()


# export_ssd_network.py: a non-empty --output_dir


def test_export_into_a_folder_of_other_files_says_what_overwrite_would_do(setup, tmp_path):
    """A folder holding only the user's notes: --overwrite writes the export beside them and
    replaces nothing; the refusal said it would replace files an earlier export wrote."""
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        '--formats=frozen_graph',
        f'--output_dir={out}',
    )
    _refused(
        proc,
        f'export_ssd_network: error: {out} is not empty (notes.txt); refusing to write into '
        f'it. Choose another --output_dir, or pass --overwrite to write anchors.npy, '
        f'frozen_graph.pb, metadata.json there beside notes.txt, which stays (no earlier export '
        f'is there: nothing is replaced or removed).',
    )
    assert os.listdir(out) == ['notes.txt']
    (out / 'more.txt').write_text('mine')
    with pytest.raises(export.OutputNotEmptyError) as info:
        export.check_output_dir(str(out), ['frozen_graph', 'saved_model'])
    assert str(info.value).endswith(
        'pass --overwrite to write anchors.npy, frozen_graph.pb, metadata.json, saved_model there '
        'beside them, which stay (no earlier export is there: nothing is replaced or removed).'
    )
    # An earlier export there: the refusal keeps saying what --overwrite replaces and removes.
    earlier = tmp_path / 'earlier'
    shutil.copytree(setup['export'], earlier)
    (earlier / 'notes.txt').write_text('mine')
    with pytest.raises(export.OutputNotEmptyError) as info:
        export.check_output_dir(str(earlier), ['frozen_graph'])
    assert str(info.value) == (
        f'{earlier} is not empty (anchors.npy, frozen_graph.pb, metadata.json, notes.txt); '
        f'refusing to write into it. Choose another --output_dir, or pass --overwrite to replace '
        f'anchors.npy, frozen_graph.pb, metadata.json there (those an earlier export wrote); '
        f'other files are left alone.'
    )
    # The model files --overwrite would remove are named (a saved_model/ was deleted unnamed).
    with pytest.raises(export.OutputNotEmptyError) as info:
        export.check_output_dir(str(earlier), ['tflite_float'])
    assert str(info.value).endswith(
        'pass --overwrite to replace anchors.npy, metadata.json, model_float.tflite there (those '
        'an earlier export wrote) and remove frozen_graph.pb (the model files of other formats '
        'its metadata.json lists); other files are left alone.'
    )


# Detection settings: refused before the card's replacement is logged


def test_export_of_int8_formats_without_a_dataset_names_the_flags_and_the_other_formats(
    setup, tmp_path
):
    """The default formats include the int8 ones: without the dataset flags the refusal said
    'need(s) calibration images'; it now also says which --formats leave them out, and comes
    before the model card is described (`model <card>` on stdout). Nothing is left in the new
    --output_dir's place."""
    out = tmp_path / 'new'
    proc = run_script(
        'export_ssd_network.py', f'--checkpoint_path={setup["prefix"]}', f'--output_dir={out}'
    )
    assert proc.stdout == ''
    others = [f for f in export.FORMATS if f not in export.INT8_FORMATS]
    _refused(
        proc,
        'export_ssd_network: error: tflite_int8 and openvino_int8 need calibration images: '
        'pass --dataset_name and --dataset_dir (the records of a split of training images, '
        f'--dataset_split_name=train), or leave them out: --formats={",".join(others)}.',
    )
    assert not out.exists()
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--output_dir={out}',
        '--formats=frozen_graph,tflite_int8',
        f'--dataset_dir={tmp_path}',
        '--dataset_split_name=trainval',
    )
    _refused(
        proc,
        'export_ssd_network: error: tflite_int8 needs calibration images: pass --dataset_name (the '
        'records of a split of training images, --dataset_split_name=trainval), or leave them '
        'out: --formats=frozen_graph.',
    )


def test_export_refuses_a_tflite_batch_size_without_a_tflite_format(setup, tmp_path):
    out = tmp_path / 'out'
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--output_dir={out}',
        '--formats=frozen_graph',
        '--tflite_batch_size=8',
    )
    _refused(
        proc,
        'export_ssd_network: error: --tflite_batch_size sets the batch of the TFLite models; '
        '--formats=frozen_graph has none (add tflite_float or tflite_int8, or leave it out).',
    )
    assert not out.exists()


def test_export_calibrates_on_the_train_split_by_default(setup, tmp_path):
    """--dataset_split_name defaulted to test: the int8 models were fitted to the split they are
    evaluated on unless the user said otherwise."""
    (tmp_path / 'records').mkdir()
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--output_dir={tmp_path / "out"}',
        '--formats=tflite_int8',
        '--dataset_name=pascalvoc_2007',
        f'--dataset_dir={tmp_path}/records',
    )
    _refused(
        proc,
        f"export_ssd_network: error: dataset 'pascalvoc_2007' split 'train': no files match "
        f'{tmp_path}/records/voc_2007_train_*.tfrecord ({tmp_path}/records is empty). Convert the '
        f'data with tf_convert_data.py --output_name=voc_2007_train.',
    )
    assert not (tmp_path / 'out').exists()


def test_a_detection_setting_out_of_range_is_refused_before_it_is_logged(setup, tmp_path):
    """eval logged 'detection settings of this run replace the card's: select_threshold 0.05 ->
    50.0' and only then refused 50; export the same (the card beside the checkpoint)."""
    refusal = (
        'error: detection setting select_threshold (--select_threshold) is 50.0, expected a '
        'number in [0, 1].'
    )
    logged = []
    with pytest.raises(card_lib.CardError) as info:
        cli.resolve_card(cli.ModelFlags(select_threshold=50.0), setup['prefix'], log=logged.append)
    assert logged == [] and 'error: ' + str(info.value) == refusal
    eval_dir = tmp_path / 'eval'
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--eval_dir={eval_dir}',
        f'--dataset_dir={tmp_path}/records',
        '--select_threshold=50',
    )
    _refused(proc, f'eval_ssd_network: {refusal}')
    assert "replace the card's" not in proc.stdout and not eval_dir.exists()
    out = tmp_path / 'export'
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--output_dir={out}',
        '--nms_threshold=-1',
    )
    _refused(
        proc,
        'export_ssd_network: error: detection setting nms_threshold (--nms_threshold) is '
        '-1.0, expected a number in [0, 1].',
    )
    assert "replace the card's" not in proc.stdout and not out.exists()


def test_eval_refuses_an_unknown_metric_with_the_flag_and_a_suggestion(setup, tmp_path):
    """It said 'metrics must be a non-empty subset of (...), got [...]' after the card loaded."""
    eval_dir = tmp_path / 'eval'
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--eval_dir={eval_dir}',
        f'--dataset_dir={tmp_path}/records',
        '--metrics=voc07,voc2012',
    )
    _refused(
        proc,
        "eval_ssd_network: error: --metrics: unknown metric 'voc2012' (did you mean voc12 or "
        "voc07?); the metrics are voc07, voc12, coco.",
    )
    assert 'model card' not in proc.stdout and not eval_dir.exists()


def test_eval_refuses_an_eval_dir_that_is_a_file_first(setup, tmp_path):
    """It was a bare '[Errno 17] File exists' after the card, the dataset and the model."""
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        f'--eval_dir={notes}',
        f'--dataset_dir={tmp_path}/records',
    )
    _refused(
        proc,
        f'eval_ssd_network: error: --eval_dir {notes} is not a folder; pass the folder for the '
        'results (a new one is created).',
    )
    assert 'model card' not in proc.stdout and notes.read_text() == 'mine'


# --model_name and --anchor_sizes typos, in every script taking them

# {script: its other flags}, {tmp}, {ckpt} and {images} from the test's values.
SCRIPT_ARGS = {
    'train_ssd_network.py': ['--train_dir={tmp}/out'],
    'eval_ssd_network.py': ['--checkpoint_path={ckpt}', '--eval_dir={tmp}/out'],
    'export_ssd_network.py': ['--checkpoint_path={ckpt}', '--output_dir={tmp}/out'],
    'detect_ssd_network.py': [
        '--checkpoint_path={ckpt}',
        '--input={images}',
        '--output_dir={tmp}/out',
    ],
}
PRESETS = 'caffe_coco, caffe_voc, mobilenet_ssd, ssd_pytorch_voc, tf_port_coco, torchvision_coco'


def _refused_first(setup, tmp_path, script, flags, message):
    """`script` with `flags` is refused with `message` before a dataset, card or checkpoint is
    read and before its output folder exists."""
    values = dict(tmp=tmp_path, ckpt=setup['prefix'], images=setup['images'])
    proc = run_script(
        script,
        *[a.format(**values) for a in SCRIPT_ARGS[script]],
        f'--dataset_dir={tmp_path}/records',
        *flags,
    )
    _refused(proc, f'{script[: -len(".py")]}: error: {message}')
    assert 'model card' not in proc.stdout and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('script', SCRIPT_ARGS)
def test_a_model_name_typo_is_refused_first_with_a_suggestion(setup, tmp_path, script):
    """`--model_name=ssd_300_mobilnet` was refused after the dataset was opened (eval) or the
    card read, as "Unknown model_name ...; known: ...", without a suggestion."""
    _refused_first(
        setup,
        tmp_path,
        script,
        ['--model_name=ssd_300_mobilnet'],
        "--model_name: unknown net 'ssd_300_mobilnet' (did you mean ssd_300_mobilenet?); the "
        f'nets are {NETS}.',
    )


@pytest.mark.parametrize(
    'script, flags, message',
    [
        (
            'train_ssd_network.py',
            ['--anchor_sizes=cafe_voc'],
            "--anchor_sizes: unknown preset 'cafe_voc' (did you mean caffe_voc or caffe_coco?); "
            f'the presets are {PRESETS}.',
        ),
        (
            'eval_ssd_network.py',
            ['--model_name=ssd_300_mobilenet', '--anchor_sizes=caffe_voc'],
            '--anchor_sizes=caffe_voc is a preset of ssd_300_vgg, ssd_512_vgg, not of '
            'ssd_300_mobilenet; the ssd_300_mobilenet presets are mobilenet_ssd.',
        ),
        (
            'export_ssd_network.py',
            ['--anchor_sizes=mobilenet'],
            "--anchor_sizes: unknown preset 'mobilenet' (did you mean mobilenet_ssd?); the presets "
            f'are {PRESETS}.',
        ),
        (
            'detect_ssd_network.py',
            ['--model_name=ssd_512_vgg', '--anchor_sizes=tf_port_voc'],
            "--anchor_sizes: unknown ssd_512_vgg preset 'tf_port_voc' (did you mean tf_port_coco?); the "
            'ssd_512_vgg presets are caffe_coco, caffe_voc, tf_port_coco.',
        ),
    ],
)
def test_an_anchor_sizes_typo_is_refused_first_with_a_suggestion(
    setup, tmp_path, script, flags, message
):
    """An unknown --anchor_sizes preset was refused once the dataset was read (train) or the card
    built, as "Unknown anchor size preset ...", without the flag's name or a suggestion; another
    net's preset is named as such. Without --model_name the card names the net later: any net's
    presets pass the first check."""
    _refused_first(setup, tmp_path, script, flags, message)


@pytest.mark.parametrize('script', SCRIPT_ARGS)
def test_a_dataset_name_typo_is_refused_first_with_a_suggestion(setup, tmp_path, script):
    """It was 'Unknown dataset ...; known: [...]' once the card or checkpoint was read (eval,
    export), or the model built (detect), without the flag or a close name."""
    _refused_first(
        setup,
        tmp_path,
        script,
        ['--dataset_name=pascalvoc2007'],
        "--dataset_name: unknown dataset 'pascalvoc2007' (did you mean pascalvoc_2007 or "
        'pascalvoc_2012?); the datasets are ' + ', '.join(dataset_factory.dataset_names()) + '.',
    )


# Flags absl refuses while parsing


@pytest.mark.parametrize(
    'script, flag, message',
    [
        (
            'detect_ssd_network.py',
            '--compute_dtype=bf16',
            'flag --compute_dtype=bf16: value should be one of <float32|bfloat16|float16> (did '
            'you mean bfloat16?)',
        ),
        (
            'train_ssd_network.py',
            '--batch_size=0',
            'flag --batch_size=0: 0 is not a positive integer',
        ),
        (
            'export_ssd_network.py',
            '--checkpoint_path=ckpt',
            'flag --output_dir=None: Flag --output_dir must have a value other than None',
        ),
        (
            'eval_ssd_network.py',
            '--eval_resize=4',
            'flag --eval_resize=4: value should be one of <WARP_RESIZE|PAD_AND_RESIZE|'
            "CENTRAL_CROP> (the older port's 4 is --eval_resize=WARP_RESIZE)",
        ),
    ],
)
def test_a_flag_absl_refuses_is_one_error_line_like_the_others(tmp_path, script, flag, message):
    """absl's own form was two lines, `FATAL Flags parsing error: ...` and `Pass --helpshort or
    --helpfull to see help on flags.`, beside the scripts' `<script>: error:` lines; an enum's
    near miss got no suggestion, unlike --formats, --metrics and --model_name."""
    out = {
        'detect_ssd_network.py': [f'--input={tmp_path}', f'--output_dir={tmp_path}/out'],
        'train_ssd_network.py': [f'--train_dir={tmp_path}/out'],
        'export_ssd_network.py': [],
        'eval_ssd_network.py': [f'--eval_dir={tmp_path}/out'],
    }[script]
    proc = run_script(script, flag, *out)
    _refused(
        proc,
        f'{script[: -len(".py")]}: error: {message}; --helpfull lists the flags.',
    )
    assert not (tmp_path / 'out').exists()


# (script, flag, what it is refused with): the older TF port's README commands, the TF Object
# Detection API's and torchvision's flag names.
OTHER_SYSTEMS_FLAGS = [
    (
        'eval_ssd_network.py',
        '--eval_resize=4',
        'flag --eval_resize=4: value should be one of <WARP_RESIZE|PAD_AND_RESIZE|'
        "CENTRAL_CROP> (the older port's 4 is --eval_resize=WARP_RESIZE)",
    ),
    (
        'eval_ssd_network.py',
        '--eval_resize=1',
        'flag --eval_resize=1: value should be one of <WARP_RESIZE|PAD_AND_RESIZE|'
        "CENTRAL_CROP> (the older port's 1, NONE, is not offered here)",
    ),
    # A digit that is not 0-9 is no number of the port's (int('²') raised a traceback).
    (
        'eval_ssd_network.py',
        '--eval_resize=²',
        'flag --eval_resize=²: value should be one of <WARP_RESIZE|PAD_AND_RESIZE|CENTRAL_CROP>',
    ),
    (
        'eval_ssd_network.py',
        '--eval_image_size=300',
        "--eval_image_size is the older TF port's flag; the input size is the model's "
        "(300x300 for ssd_300_*, 512x512 for ssd_512_vgg, or its model card's); the older "
        'port ignored this flag too: drop it',
    ),
    (
        'eval_ssd_network.py',
        '--num_preprocessing_threads=4',
        "--num_preprocessing_threads is the older TF port's flag; its threads are "
        '--num_threads (TF and tf.data threads)',
    ),
    (
        'train_ssd_network.py',
        '--labels_offset=0',
        "--labels_offset is the older TF port's flag; labels come from the records (1, 2, "
        '...; 0 is background): drop it',
    ),
    # Another script's older-port flag gets absl's plain refusal.
    (
        'detect_ssd_network.py',
        '--num_preprocessing_threads=4',
        "Unknown command line flag 'num_preprocessing_threads'",
    ),
    # The TF Object Detection API's and torchvision's names (--score_threshold got "Did you
    # mean: stderrthreshold ?").
    (
        'detect_ssd_network.py',
        '--score_threshold=0.3',
        '--score_threshold is a TF Object Detection API post-processing setting '
        '(pipeline.config); here it is --select_threshold (the minimum class score)',
    ),
    (
        'eval_ssd_network.py',
        '--detections_per_img=100',
        '--detections_per_img is a torchvision SSD argument; here it is --keep_top_k '
        '(detections per image)',
    ),
    (
        'eval_ssd_network.py',
        '--iou_threshold=0.6',
        '--iou_threshold is a TF Object Detection API post-processing setting '
        '(pipeline.config); here it is --nms_threshold (the NMS IoU threshold); the IoU a '
        'detection needs to match a ground truth is --matching_threshold',
    ),
    (
        'eval_ssd_network.py',
        '--checkpoint_dir=train',
        "--checkpoint_dir is the TF Object Detection API's flag; here --checkpoint_path=<the "
        "trainer's --train_dir> with --wait_for_checkpoints evaluates each checkpoint as it "
        'comes (without it: the latest one, once)',
    ),
    (
        'train_ssd_network.py',
        '--model_dir=train',
        "--model_dir is the TF Object Detection API's flag; here the training folder is "
        '--train_dir',
    ),
]

# Parses each flag of argv[2:] as the script argv[1] does (its flags and absl's help flags, which
# app.run defines, then the parser of tf_extended/logs.run); prints {flag: [exit status, stderr]}.
PARSE_FLAGS = r"""
import contextlib
import importlib
import io
import json
import sys
from absl import app, flags
from tf_extended import logs

script, args = sys.argv[1], sys.argv[2:]
importlib.import_module(script[: -len('.py')])
app.define_help_flags()
sys.argv[0] = script  # the name of its error lines
refused = {}
for flag in args:
    flags.FLAGS.unparse_flags()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            logs._parse_flags([script, flag])
    except SystemExit as exit_:
        refused[flag] = [exit_.code, stderr.getvalue()]
print(json.dumps(refused))
"""


@pytest.mark.parametrize('script', sorted({script for script, _, _ in OTHER_SYSTEMS_FLAGS}))
def test_the_older_ports_flags_and_values_name_what_replaces_them(script):
    """The older TF port's README commands: `--eval_resize=4` (its Resize numbers), and flags
    that do not exist here were refused as unknown, `--eval_image_size` with "did you mean
    eval_resize", which means something else; the TF Object Detection API's and torchvision's
    flag names likewise.

    One process per script parses them all, as its runs do; a run of each script refused while
    parsing is test_a_flag_absl_refuses_is_one_error_line_like_the_others."""
    name = script[: -len('.py')]
    want = {
        flag: [1, f'{name}: error: {message}; --helpfull lists the flags.\n']
        for other, flag, message in OTHER_SYSTEMS_FLAGS
        if other == script
    }
    proc = run_python(PARSE_FLAGS, script, *want)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == want


def test_an_exports_other_file_names_the_model_files_beside_it(setup, tmp_path):
    """detect --exported_model=model_openvino.bin said only 'not an export ... by its file
    type' (--openvino_model named the .xml; eval named the models)."""
    export = tmp_path / 'export'
    export.mkdir()
    for name in ('metadata.json', 'model_openvino.xml', 'model_openvino.bin', 'frozen_graph.pb'):
        (export / name).write_bytes(b'x')
    out = tmp_path / 'out'
    proc = run_script(
        'detect_ssd_network.py',
        f'--exported_model={export / "model_openvino.bin"}',
        f'--input={setup["images"]}',
        f'--output_dir={out}',
    )
    _refused(
        proc,
        f'detect_ssd_network: error: {export / "model_openvino.bin"}: not an export of '
        'export_ssd_network.py by its file type (an OpenVINO model file (.xml), a frozen graph file '
        '(.pb), a TFLite model file (.tflite) or a SavedModel folder); the model files beside it: '
        f'{export / "frozen_graph.pb"}, '
        f'{export / "model_openvino.xml"}.',
    )
    assert not out.exists()


def test_model_flags_that_an_export_would_ignore_are_refused(setup, agreeing_run, tmp_path):
    """detect --exported_model=<the export> --model_name=ssd_300_vgg ran the exported MobileNet
    without a word, as --model_card did (then told to run the checkpoint with the flag, which
    would not fit the MobileNet's weights either); a flag that agrees with the card passes. The
    card is named where it was read: the metadata.json, or the model file holding it."""
    graph = setup['export'] / 'frozen_graph.pb'
    meta = setup['export'] / 'metadata.json'
    out = tmp_path / 'out'
    common = [f'--exported_model={graph}', f'--input={setup["images"]}', f'--output_dir={out}']
    proc = run_script('detect_ssd_network.py', *common, '--model_name=ssd_300_vgg')
    _refused(
        proc,
        f'detect_ssd_network: error: --model_name=ssd_300_vgg contradicts the model card {meta}, '
        'which says ssd_300_mobilenet. Drop --model_name (the card describes the model), or export '
        'a checkpoint trained with it (export_ssd_network.py) to use --model_name=ssd_300_vgg.',
    )
    # eval, of a frozen graph copied alone: its card is the one inside it.
    lone = shutil.copy(graph, tmp_path / 'lone.pb')
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={lone}',
        '--depth_multiplier=0.5',
        f'--eval_dir={out}',
        f'--dataset_dir={tmp_path}',
    )
    _refused(
        proc,
        f'eval_ssd_network: error: --depth_multiplier=0.5 contradicts the model card {lone}, '
        'which says 0.25. Drop --depth_multiplier (the card describes the model), or export a '
        'checkpoint trained with it (export_ssd_network.py) to use --depth_multiplier=0.5.',
    )
    proc = run_script('detect_ssd_network.py', *common, f'--model_card={setup["train"]}/model.json')
    _refused(
        proc,
        'detect_ssd_network: error: --model_card describes the model built from a checkpoint; '
        'an exported model is described by the metadata.json it was exported with: leave it out.',
    )
    assert not out.exists()
    proc = agreeing_run[0]  # --model_name=ssd_300_mobilenet
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_precision_flag_the_model_would_ignore_is_refused(setup, tmp_path):
    """--compute_dtype with an exported model, --openvino_precision with another than an
    OpenVINO model: they ran in the model's own precision without a word (a user believed they
    had measured bf16)."""
    graph = setup['export'] / 'frozen_graph.pb'
    out = tmp_path / 'out'
    proc = run_script(
        'detect_ssd_network.py',
        f'--frozen_graph={graph}',
        '--compute_dtype=bfloat16',
        f'--input={setup["images"]}',
        f'--output_dir={out}',
    )
    _refused(
        proc,
        'detect_ssd_network: error: --compute_dtype sets the arithmetic of the graph built from '
        'a checkpoint; an exported model computes as it was exported (export_ssd_network.py '
        '--compute_dtype), an OpenVINO model as --openvino_precision says.',
    )
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={graph}',
        '--openvino_precision=bf16',
        f'--eval_dir={out}',
        f'--dataset_dir={tmp_path}',
    )
    _refused(
        proc,
        'eval_ssd_network: error: --openvino_precision applies to an OpenVINO model (.xml); this '
        'model is a frozen graph.',
    )
    proc = run_script(
        'detect_ssd_network.py',
        f'--checkpoint_path={setup["prefix"]}',
        '--openvino_precision=bf16',
        f'--input={setup["images"]}',
        f'--output_dir={out}',
    )
    _refused(
        proc,
        'detect_ssd_network: error: --openvino_precision applies to an OpenVINO model (.xml); '
        'this model is a checkpoint.',
    )
    assert not out.exists()
