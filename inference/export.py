"""Exports of a checkpoint: frozen GraphDef, SavedModel, TFLite float32 and int8, with metadata.

All exports hold the graph of `inference.detection.build_detection_graph` (uint8 RGB images in,
eval preprocessing, net, NMS, detections out; raw outputs beside). Files in the output folder:

  frozen_graph.pb    GraphDef with constants; inputs `images`, `image_sizes`; outputs by name.
                     Like the TFLite models, it carries the export's metadata inside
                     (inference/embedded_card.py), as the IR does in its runtime info.
  saved_model/       signatures `serving_default` (images), `serving_padded` (images,
                     image_sizes), `serving_encoded` (encoded_images: JPEG or PNG files' bytes,
                     decoded in the graph, `detection.add_encoded_input`) and
                     `serving_tf_example` (tf_examples: serialized tf.Examples holding them as
                     `image/encoded`); `assets.extra/` holds the metadata and anchors.
  model_float.tflite TFLite builtins only (NMS as NON_MAX_SUPPRESSION_V5 per class): input
                     `images` uint8 `[B, H, W, 3]` with B fixed at export, any H and W.
  model_int8.tflite  the same graph after post-training quantisation of the net's operations
                     (int8 weights and activations, `_quantize_the_net`); input stays uint8 RGB,
                     the outputs float32, and resizing, normalisation, decoding and NMS compute
                     in float32.
  model_openvino.xml/.bin  OpenVINO IR (inference/openvino_model.py): input `images` uint8
                     `[B, H, W, 3]` (any B, H, W, one size per call; with --fixed_size H, W
                     the net's, nothing resized), the frozen graph's
                     outputs; NMS inside as OpenVINO's NonMaxSuppression; precision (fp32,
                     bf16) chosen when it is loaded.
  model_openvino_int8.xml/.bin  the same IR quantised by NNCF (int8 convolutions, the rest
                     float32; `openvino_model.INT8_SCHEME`), calibrated like tflite_int8.
  (frozen graph and SavedModel compute in `card.compute_dtype`, e.g. bfloat16; TFLite has no
  bfloat16 kernels, so its models compute in float32 / int8 whatever the card says.)
  anchors.npy        float32 `[N, 4]` relative `[ymin, xmin, ymax, xmax]` (for raw outputs).
  metadata.json      the model card (model/card.py: model, input size and normalisation,
                     class names, anchors, thresholds, provenance) plus the exported
                     checkpoint and its step, tensor names, files, and the size and sha256 of
                     each model file written beside it (`card.FILE_DIGESTS`; the SavedModel's
                     assets.extra/metadata.json: of its own files), which loaders check.
  .export_pending.json  while an export runs (left by one that was killed): the formats whose
                     files there are exports' (`earlier_exports`, `check_output_dir`); while
                     it is there, readers refuse the folder (`card.check_export_finished`).

int8 (tflite_int8, openvino_int8): calibration uses `representative_images` (the first images
of a TFRecord split; the eval preprocessing is part of the graph). What it costs on a trained
model (the main job's) is measured by benchmarks/bench_eval.py (README, Export and deployment). TFLite
int8 speed (benchmarks/bench_inference.py, 2 CPUs): 1.4x (MobileNet) to 3.8x (VGG512) lower
batch-1 latency than TFLite float, files 3.6-4x smaller.
"""

import contextlib
import dataclasses
import io
import os
import re

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as tflite_convert
from tensorflow.lite.python import util as tflite_util
from tensorflow.python.util import deprecation

from inference import detection
from inference import embedded_card
from inference import openvino_model
from model import card as card_lib
from model import checkpoints
from model import cli
from preprocessing import geometry
from tf_extended import atomic_io
from tf_extended import folder_lock
from tf_extended import safe_io
from tf_extended import texts

v1 = tf.compat.v1

FORMATS = (
    'frozen_graph',
    'saved_model',
    'tflite_float',
    'tflite_int8',
    'openvino',
    'openvino_int8',
)
# TensorFlow's INFO records during an export that say nothing a user needs: the restore of the
# checkpoint, once per format (`export` names it once), the SavedModel builder's, whose
# "written to" is a temporary folder, and the TFLite converter's note on its own default.
TF_CHATTER = (
    checkpoints.RESTORE_RECORD,
    r'No assets to (save|write)',
    r'SavedModel written to',
    r'Using experimental converter',
)
# Formats calibrated on images (post-training int8 quantisation).
INT8_FORMATS = ('tflite_int8', 'openvino_int8')
FILES = {
    'frozen_graph': 'frozen_graph.pb',
    'saved_model': 'saved_model',
    'tflite_float': 'model_float.tflite',
    'tflite_int8': 'model_int8.tflite',
    'openvino': openvino_model.FILE,
    'openvino_int8': openvino_model.INT8_FILE,
}
# Files a format writes besides FILES[format].
EXTRA_FILES = {
    'openvino': [openvino_model.BIN_FILE],
    'openvino_int8': [openvino_model.INT8_BIN_FILE],
}
# Formats whose loaders read the metadata.json beside them (a SavedModel carries its own).
BESIDE_METADATA = tuple(fmt for fmt in FORMATS if fmt != 'saved_model')
# What an export's SavedModel folder holds: TF's v1 builder's files (fingerprint.pb and an empty
# assets/ where a TF version writes them) and the sidecars in assets.extra/. A saved_model/ that
# holds anything else holds a user's files: it is neither replaced nor removed
# (`saved_model_problem`).
SAVED_MODEL_FILES = re.compile(
    r'saved_model\.pb|fingerprint\.pb|variables/variables\.index'
    r'|variables/variables\.data-\d{5}-of-\d{5}|assets\.extra/(metadata\.json|anchors\.npy)'
)
SAVED_MODEL_FOLDERS = ('variables', 'assets.extra', 'assets')


def anchors_metadata(card):
    """The anchors' description: count, file, coding, and the size preset they match (if any)."""
    preset = card.anchor_size_preset
    return {
        'file': detection.ANCHORS_FILE,
        'count': int(len(card.net().anchors())),
        'format': 'float32 [N, 4] relative [ymin, xmin, ymax, xmax], in raw output order',
        'size_preset': preset,
        'prior_scaling': list(card.params.prior_scaling),
        'decoding': 'cx = tx * v0 * aw + acx; cy = ty * v1 * ah + acy; '
        'w = exp(tw * v2) * aw; h = exp(th * v3) * ah',
    }


def metadata(
    card,
    formats,
    batch_size=None,
    fixed_size=False,
    tflite_batch_size=1,
    calibration=None,
    checkpoint=None,
):
    """The metadata JSON dict of an export folder: the model card plus what the export holds.

    checkpoint: {'path', 'step'} of the exported checkpoint.
    """
    meta = card.to_dict()
    meta['export'] = {
        'checkpoint': checkpoint,
        'time': card_lib.now(),
        'git_commit': card_lib.git_commit(),
    }
    meta['input'].update(
        any_size=not fixed_size,
        batch_size=batch_size,
        tflite_batch_size=tflite_batch_size,
        note=(
            'Images of the input size only (--fixed_size): warp them to it (bilinear) before '
            'feeding them.'
            if fixed_size
            else 'The graph resizes every image to the input size (warp, bilinear) itself.'
        ),
    )
    meta['anchors'] = anchors_metadata(card)
    meta['tensors'] = {
        'inputs': [detection.INPUT, detection.SIZES],
        'tflite_inputs': [detection.INPUT],
        'openvino_inputs': [detection.INPUT],
        'encoded_inputs': [detection.ENCODED_INPUT],
        'tf_example_inputs': [detection.TF_EXAMPLE_INPUT],
        'outputs': list(detection.OUTPUTS),
        'signatures': [
            'serving_default',
            detection.PADDED_SIGNATURE,
            detection.ENCODED_SIGNATURE,
            detection.TF_EXAMPLE_SIGNATURE,
        ],
    }
    meta['files'] = {fmt: FILES[fmt] for fmt in formats}
    if {'openvino', 'openvino_int8'} & set(formats):
        meta['openvino'] = openvino_model.metadata(formats, card if fixed_size else None)
    if calibration:
        meta['int8'] = calibration
    return meta


def _session_with_graph(card, checkpoint_path, **graph_args):
    graph = tf.Graph()
    with graph.as_default():
        endpoints = detection.build_detection_graph(card, **graph_args)
        sess = v1.Session(graph=graph)
        detection.restore_variables(sess, checkpoint_path)
    return graph, sess, endpoints


@contextlib.contextmanager
def _restored(card, checkpoint_path, batch_size=None, fixed_size=False):
    """(graph, session, endpoints) of the inference graph with the checkpoint restored, the
    session closed on exit: the frozen graph and the SavedModel are written from one (each built
    its own, a quarter of a four-format export's time)."""
    graph, sess, endpoints = _session_with_graph(
        card, checkpoint_path, batch_size=batch_size, fixed_size=fixed_size
    )
    with graph.as_default(), sess:
        yield graph, sess, endpoints


def _write_saved_model(export_dir, card, meta, restored):
    """Writes the SavedModel (see the module docstring) of `restored` (`_restored`'s, entered)
    atomically: built in a temporary folder beside `export_dir`, then renamed over it."""
    _, sess, endpoints = restored
    batch_size = endpoints.inputs[detection.INPUT].shape[0]
    encoded = detection.add_encoded_input(card, batch_size)
    examples = detection.add_encoded_input(card, batch_size, tf_examples=True)
    with atomic_io.temp_dir(export_dir) as temp:
        build_dir = os.path.join(temp, 'model')
        # The v1 SavedModel builder: its deprecation notices silenced (see `detection.freeze`).
        with deprecation.silence():
            info = v1.saved_model.utils.build_tensor_info

            def signature(inputs, outputs):
                return v1.saved_model.signature_def_utils.build_signature_def(
                    inputs={n: info(t) for n, t in inputs.items()},
                    outputs={n: info(t) for n, t in outputs.items()},
                    method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
                )

            builder = v1.saved_model.Builder(build_dir)
            builder.add_meta_graph_and_variables(
                sess,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={
                    'serving_default': signature(
                        {detection.INPUT: endpoints.inputs[detection.INPUT]}, endpoints.outputs
                    ),
                    detection.PADDED_SIGNATURE: signature(endpoints.inputs, endpoints.outputs),
                    detection.ENCODED_SIGNATURE: signature(encoded.inputs, encoded.outputs),
                    detection.TF_EXAMPLE_SIGNATURE: signature(examples.inputs, examples.outputs),
                },
            )
            builder.save()
        # Its own files' sizes and digests, which its loader checks (`card.check_model_files`).
        digests = _digests(build_dir, _files_under(build_dir))
        _write_sidecars(
            os.path.join(build_dir, 'assets.extra'), card, {**meta, card_lib.FILE_DIGESTS: digests}
        )
        # The earlier one moved aside, then removed with the temporary folder: replaced by two
        # renames. Checked again now (`check_output_dir` did minutes ago, before calibration or
        # a conversion): a file put in it since is not deleted.
        earlier = os.path.join(temp, 'earlier')
        if os.path.lexists(export_dir):
            problem = saved_model_problem(export_dir)
            if problem:
                raise ForeignFileError(
                    f'{export_dir} is not from an earlier export ({problem}); refusing to '
                    f'replace it: move it out of {os.path.dirname(export_dir) or "."}.'
                )
            os.replace(export_dir, earlier)
        try:
            os.replace(build_dir, export_dir)
        except BaseException:
            if os.path.lexists(earlier):
                os.replace(earlier, export_dir)
            raise


def tflite_model(card, checkpoint_path, batch_size=1, fixed_size=False, representative_images=None):
    """The TFLite flatbuffer (bytes) of the TFLite variant of the graph.

    Args:
      representative_images: None for float32; else a list of uint8 RGB images `[H, W, 3]`
        (any sizes) for post-training int8 calibration, fed as the model's input (whose
        preprocessing is the evaluation one); each sample is one image repeated `batch_size`
        times (the images of a batch must share a size).
    """
    card = dataclasses.replace(card, compute_dtype='float32')
    graph, sess, endpoints = _session_with_graph(
        card, checkpoint_path, batch_size=batch_size, fixed_size=fixed_size, tflite=True
    )
    with graph.as_default(), sess:
        graph_def = detection.freeze(sess, detection.OUTPUTS)
    # Frozen above and converted in an empty graph, not `from_session`: that one's freezing logs
    # TF's v1 deprecation notice, and Grappler, run by the converter on the default graph's
    # collections, an E-level "Init node ... doesn't exist in graph" for the variables. (Only
    # the input tensors' names, dtypes and shapes are used.)
    with tf.Graph().as_default():
        converter = v1.lite.TFLiteConverter(
            graph_def,
            [endpoints.inputs[detection.INPUT]],
            [endpoints.outputs[k] for k in detection.OUTPUTS],
        )
        if representative_images is None:
            return converter.convert()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.repeat(im[None], batch_size, axis=0)] for im in representative_images
        )
        return _quantize_the_net(converter)


# TFLite tensors whose ops int8 quantisation leaves in float32: the graph's before and after the
# net (`detection.build_detection_graph`'s scopes).
_FLOAT_SCOPES = tuple(f'{s}/' for s in (detection.PREPROCESS_SCOPE, detection.POSTPROCESS_SCOPE))


def _quantize_the_net(converter):
    """The int8 model of a calibrating `converter` (optimizations and representative_dataset
    set) with only the net's ops quantised: resizing, normalisation, box decoding and NMS stay
    float32. Quantised, the decoding took its ranges from the largest box codes the calibration
    saw: a briefly trained model whose codes reached 1e3 got an Exp output scale of 7.8e9, on
    which TFLite aborted the process when it allocated the model, and any such range leaves
    int8 boxes no precision.

    The steps of TFLite's QuantizationDebugger (its API for quantising selected ops), less the
    instrumented model of every op it quantises first, and with the calibrated ranges of the
    float ops dropped before quantising: decoded boxes that overflow to inf (codes of a barely
    trained model) gave those ops an infinite range, on which the converter crashed the process
    (SIGSEGV)."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # the float model with the ranges it saw
    model = tflite_util._convert_model_from_bytearray_to_object(converter.convert())
    float_nodes = []
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            name, ranges = tensor.name.decode(), tensor.quantization
            stays_float = name.startswith(_FLOAT_SCOPES)
            if stays_float:
                float_nodes.append(name)
            if ranges is not None and ranges.min is not None:
                if stays_float or not np.isfinite([ranges.min, ranges.max]).all():
                    ranges.min = ranges.max = None
    return tflite_convert.mlir_quantize(
        tflite_util._convert_model_from_object_to_bytearray(model),
        disable_per_channel=converter._experimental_disable_per_channel,
        fully_quantize=False,
        enable_numeric_verify=False,
        denylisted_nodes=float_nodes,
    )


def representative_images(dataset, num_images, card=None):
    """The first `num_images` images (uint8 RGB, original sizes) of a TFRecord split (a
    `dataset_factory.DetectionDataset`); the model's evaluation preprocessing is inside the
    calibrated graph. With `card` (fixed-size exports), they are warped to its input size
    (`geometry.warp_resize_uint8`, as evaluation feeds such a model)."""
    with tf.Graph().as_default():
        examples = dataset.make_dataset().take(num_images)
        image = v1.data.make_one_shot_iterator(examples).get_next()['image']
        if card is not None:
            image = geometry.warp_resize_uint8(image, card.input_shape)
        images = []
        with v1.Session() as sess:
            while True:
                try:
                    images.append(sess.run(image))
                except tf.errors.OutOfRangeError:
                    break
    if not images:
        raise ValueError(
            f'{dataset.name} split {dataset.split_name} in {dataset.dataset_dir} has '
            f'no images for int8 calibration.'
        )
    return images


def _files_under(folder):
    """The relative paths ('/'-separated) of the files under `folder`, sorted."""
    return sorted(
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, '/')
        for root, _, names in os.walk(folder)
        for name in names
    )


def _digests(folder, names):
    """{name: {'size', 'sha256'}} of the files `names` in `folder` (`card.FILE_DIGESTS`)."""
    return {name: safe_io.file_digest(os.path.join(folder, name)) for name in names}


def _write_sidecars(directory, card, meta):
    os.makedirs(directory, exist_ok=True)
    atomic_io.write_json_atomic(os.path.join(directory, detection.METADATA_FILE), meta)
    buffer = io.BytesIO()
    np.save(buffer, card.net().anchors())
    atomic_io.write_bytes_atomic(os.path.join(directory, detection.ANCHORS_FILE), buffer.getvalue())


class OutputNotEmptyError(ValueError):
    """The output folder holds files and overwriting was not asked for."""


class ForeignFileError(OutputNotEmptyError):
    """A file an export would replace that no record shows an earlier export wrote."""


# In an output folder while an export runs (removed when it ends): the formats whose files are
# the exports' there (this one's and those the earlier records listed), so that an export that
# was killed before its metadata.json can be run again with --overwrite.
PENDING_FILE = card_lib.EXPORT_PENDING_FILE  # readers refuse such a folder
# Why `earlier_exports` counts a file as an export's (the log of `remove_stale_formats`).
LISTED = f'its {detection.METADATA_FILE} listed it'
INTERRUPTED = f'the {PENDING_FILE} of an export that was interrupted lists it'


def written_names(formats):
    """The names an export of `formats` writes in its folder (nothing else is touched)."""
    return sorted(
        [FILES[fmt] for fmt in formats]
        + [detection.METADATA_FILE, detection.ANCHORS_FILE]
        + [name for fmt in formats for name in EXTRA_FILES.get(fmt, [])]
    )


def _listed_formats(path, export_metadata=True):
    """The formats the record at `path` lists (an export's metadata.json, or with
    `export_metadata=False` a `PENDING_FILE`), or None where it is none of ours: absent,
    unreadable, or another program's file."""
    if not os.path.lexists(path):
        return None
    try:
        record = card_lib.read_json_object(path, 'export record')
    except card_lib.CardError:
        return None
    files = record.get('files')
    if not isinstance(files, dict):
        return None
    if export_metadata and not all(isinstance(record.get(k), dict) for k in ('tensors', 'anchors')):
        return None
    return [fmt for fmt in FORMATS if fmt in files and files[fmt] == FILES[fmt]]


def earlier_exports(output_dir):
    """The files in `output_dir` that its records show exports of ours wrote: {name: (format or
    None for metadata.json and anchors.npy, why)}. The records: the folder's metadata.json
    (the formats it lists) and the `PENDING_FILE` of an export that was interrupted; a
    saved_model/ they list must also show itself an export's alone to be removed or replaced
    (`saved_model_problem`). A name is listed whether or not the file is there."""
    ours = {}
    for record, why in ((PENDING_FILE, INTERRUPTED), (detection.METADATA_FILE, LISTED)):
        listed = _listed_formats(
            os.path.join(output_dir, record), record == detection.METADATA_FILE
        )
        if listed is None:
            continue
        ours[detection.METADATA_FILE] = ours[detection.ANCHORS_FILE] = (None, why)
        for fmt in listed:
            ours.update((name, (fmt, why)) for name in [FILES[fmt]] + EXTRA_FILES.get(fmt, []))
    return ours


def saved_model_problem(path, unchanged=False):
    """Why the saved_model/ folder at `path` is not shown to be an earlier export's alone (text
    beginning 'it ...'), or None: its assets.extra/metadata.json is an export's, and it holds
    only SAVED_MODEL_FILES in SAVED_MODEL_FOLDERS (no link, nothing else), so removing or
    replacing it deletes nothing an export did not write. With `unchanged` (its removal by an
    export of other formats, which the user did not name), each file also has the size and
    sha256 the sidecar records: a file saved again under an export's name is kept; replacing
    saved_model/, which --overwrite names, takes the names."""
    if os.path.islink(path):
        return 'it is a link, where an export writes a folder'
    if not os.path.isdir(path):
        return 'it is a file, where an export writes a folder'
    sidecar = os.path.join(path, 'assets.extra', detection.METADATA_FILE)
    if _listed_formats(sidecar) is None:
        return f'it holds no assets.extra/{detection.METADATA_FILE} an export wrote'
    unreadable = []
    for root, folders, names in os.walk(path, onerror=unreadable.append):
        folders.sort()
        for name in sorted(folders + names):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path).replace(os.sep, '/')
            if os.path.islink(full):
                return f'it holds {relative}, a link, which no export writes'
            if name in folders:
                ours = relative in SAVED_MODEL_FOLDERS
            else:
                ours = bool(SAVED_MODEL_FILES.fullmatch(relative)) and os.path.isfile(full)
            if not ours:
                return f'it holds {relative}, which no export writes'
    if unreadable:
        return f'part of it cannot be read ({unreadable[0]})'
    return _changed_since_export(path, sidecar) if unchanged else None


def _changed_since_export(path, sidecar):
    """Which file of the SavedModel at `path` is not as its export wrote it, by the sizes and
    sha256 its `sidecar` records (`card.FILE_DIGESTS`; none recorded by older exports: None), as
    `saved_model_problem` says it, or None."""
    try:
        digests = card_lib.recorded_digests(
            card_lib.read_json_object(sidecar, 'export record'), sidecar
        )
    except card_lib.CardError as err:
        return f'its assets.extra/{detection.METADATA_FILE} cannot be read ({err})'
    if digests is None:
        return None
    for name in _files_under(path):
        if name.startswith('assets.extra/'):
            continue  # the sidecars themselves, written after the digests
        entry = digests.get(name)
        if entry is None:
            return f'it holds {name}, which its export did not write'
        if not card_lib.matches_record(os.path.join(path, name), entry, 'SavedModel file'):
            return f'its {name} is not the file its export wrote'
    return None


def _foreign(output_dir, name, ours):
    """Why the existing `name` in `output_dir` is not shown to be an export's, or None."""
    path = os.path.join(output_dir, name)
    if name == FILES['saved_model']:
        return saved_model_problem(path)
    if name in ours:
        if os.path.isdir(path) and not os.path.islink(path):
            return 'a folder, where an export writes a file'
        return None
    if name == detection.METADATA_FILE:
        return 'not the metadata an export writes'
    return f'no {detection.METADATA_FILE} an export wrote there lists it'


def _remove_unused_pending(output_dir):
    """Removes the `PENDING_FILE` of an export that stopped before it wrote anything (the folder
    holds no export's metadata.json nor any file the record lists)."""
    ours = earlier_exports(output_dir)
    if ours.get(detection.METADATA_FILE, (None, None))[1] == INTERRUPTED and not any(
        os.path.lexists(os.path.join(output_dir, name)) for name in ours
    ):
        os.remove(os.path.join(output_dir, PENDING_FILE))


def check_formats(formats):
    """Raises ValueError for an empty `formats` or one not in FORMATS, suggesting the closest."""
    cli.check_choices('--formats', formats, FORMATS, 'format')


def check_output_dir(output_dir, formats, overwrite=False):
    """Refuses a non-empty `output_dir` unless `overwrite` (then `written_names` are replaced and
    `remove_stale_formats` removes the other formats' model files after the export; the folder's
    other files stay as they are). Either way, a file there of a name this export writes that no
    record shows an export wrote (`earlier_exports`) is refused, and the temporaries a killed
    export left there (its staged checkpoint, half-written files) are removed first.

    Returns:
      `earlier_exports(output_dir)` ({} for a new folder).
    Raises:
      ForeignFileError: naming the first such file.
      OutputNotEmptyError: naming the folder, what it holds and what --overwrite would do there
        (replace an earlier export's files, or, with none there, write beside the others).
      ValueError: `output_dir` is a file, or `check_formats` refuses `formats`.
    """
    check_formats(formats)
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(
            f'--output_dir {output_dir} is not a folder; choose a new or empty folder.'
        )
    if not os.path.isdir(output_dir):
        return {}
    atomic_io.remove_orphans(output_dir)  # temporaries of an export that was killed
    _remove_unused_pending(output_dir)
    ours = earlier_exports(output_dir)
    for name in written_names(formats):
        path = os.path.join(output_dir, name)
        why = _foreign(output_dir, name, ours) if os.path.lexists(path) else None
        if why:
            raise ForeignFileError(
                f'{path} is not from an earlier export ({why}); refusing to replace it: choose '
                f'another --output_dir, or move it out of {output_dir}.'
            )
    if overwrite:
        return ours
    # The lock file of the run (export_ssd_network.py's, tf_extended/folder_lock) is not content.
    present = sorted(n for n in os.listdir(output_dir) if n != folder_lock.LOCK_NAME)
    if present:
        listed = texts.listed(present, 5)
        names = ", ".join(written_names(formats))
        if not ours:  # no earlier export there: --overwrite replaces and removes nothing
            beside = f'{present[0]}, which stays' if len(present) == 1 else 'them, which stay'
            raise OutputNotEmptyError(
                f'{output_dir} is not empty ({listed}); refusing to write into it. Choose '
                f'another --output_dir, or pass --overwrite to write {names} there beside '
                f'{beside} (no earlier export is there: nothing is replaced or removed).'
            )
        # What --overwrite would remove (`remove_stale_formats`), named: a saved_model/ too.
        stale = sorted(
            name + ('/' if fmt == 'saved_model' else '')
            for name, (fmt, _) in ours.items()
            if fmt is not None
            and fmt not in formats
            and os.path.lexists(os.path.join(output_dir, name))
        )
        remove = (
            f' and remove {", ".join(stale)} (the model files of other formats its '
            f'{detection.METADATA_FILE} lists)'
            if stale
            else ''
        )
        raise OutputNotEmptyError(
            f'{output_dir} is not empty ({listed}); refusing to write into it. Choose another '
            f'--output_dir, or pass --overwrite to replace {names} there (those an earlier '
            f'export wrote){remove}; other files are left alone.'
        )
    return ours


def remove_stale_formats(output_dir, formats, earlier, log=print):
    """Removes the model files of formats other than `formats` that an earlier export into
    `output_dir` wrote (`earlier`: `earlier_exports` before this export): the new metadata.json
    beside them describes another model, whose card (classes, anchors, step) their loaders would
    take. A saved_model/ is removed where the folder's record lists it and it shows itself an
    earlier export's alone (`saved_model_problem`: a folder of another model beside the new
    export's metadata.json was shipped with it); one that is not (unlisted, a user's file in it,
    a file changed since) stays, logged with why. Files no record lists stay. Returns the paths
    removed."""
    removed = []
    for fmt in BESIDE_METADATA:
        if fmt in formats:
            continue
        for name in [FILES[fmt]] + EXTRA_FILES.get(fmt, []):
            path = os.path.join(output_dir, name)
            if earlier.get(name, (None,))[0] != fmt:
                continue
            if os.path.isfile(path) or os.path.islink(path):
                os.remove(path)
                removed.append(path)
                log(
                    f'removed {path}: an earlier export\'s {fmt} ({earlier[name][1]}), not '
                    f'described by the new {detection.METADATA_FILE}'
                )
    path = os.path.join(output_dir, FILES['saved_model'])
    if 'saved_model' in formats or not os.path.lexists(path):
        return removed
    problem = (
        saved_model_problem(path, unchanged=True)
        if earlier.get(FILES['saved_model'], (None,))[0] == 'saved_model'
        else f'no {detection.METADATA_FILE} of an earlier export in the folder lists it'
    )
    if problem:
        log(
            f'kept {path}: not shown to be an earlier export\'s SavedModel alone ({problem}); '
            f'the new {detection.METADATA_FILE} does not describe it: move it out of '
            f'{output_dir} or delete it if it is not wanted there'
        )
        return removed
    # Moved aside (one rename), then deleted: a kill leaves a temporary the next export removes.
    with atomic_io.temp_dir(path) as temp:
        os.replace(path, os.path.join(temp, 'earlier'))
    removed.append(path)
    why = earlier[FILES['saved_model']][1]
    log(
        f'removed {path}: an earlier export\'s saved_model ({why}), not described by the new '
        f'{detection.METADATA_FILE}'
    )
    return removed


def export(
    card,
    checkpoint_path,
    output_dir,
    formats=FORMATS,
    batch_size=None,
    fixed_size=False,
    tflite_batch_size=1,
    calibration_images=None,
    calibration_source=None,
    log=print,
    overwrite=False,
    moving_average_decay=None,
):
    """Writes the requested exports, `anchors.npy` and `metadata.json` to `output_dir`.

    Args:
      formats: subset of FORMATS.
      batch_size: static batch of the frozen graph and SavedModel (None: any).
      fixed_size: every format's input is `[B, h, w, 3]` at the net's input size (the
        OpenVINO IR's without a resize; a detector refuses other sizes, evaluation warps the
        images to it first).
      tflite_batch_size: batch of the TFLite models (static).
      calibration_images: uint8 RGB images for tflite_int8 (see `representative_images`);
        calibration_source: a description of them for the metadata.
      overwrite: write into a folder that holds files (`check_output_dir`).
      moving_average_decay: export the moving averages of the trainable weights that the
        checkpoint holds beside them (as eval with the flag evaluates), not the raw weights.
    Returns:
      dict format -> path written.
    Raises:
      OutputNotEmptyError: see `check_output_dir`; ValueError: bad formats or calibration.
    """
    int8 = [fmt for fmt in INT8_FORMATS if fmt in formats]
    if int8 and not calibration_images:
        need = 'need' if len(int8) > 1 else 'needs'
        raise ValueError(f'{" and ".join(int8)} {need} calibration images (a dataset split).')
    earlier = check_output_dir(output_dir, formats, overwrite)
    prefix = checkpoints.resolve_checkpoint(checkpoint_path)  # a bad path: nothing created
    os.makedirs(output_dir, exist_ok=True)
    calibration = None
    if int8:
        calibration = {'images': len(calibration_images), 'source': calibration_source}
    if 'tflite_int8' in formats:
        calibration['scheme'] = (
            'post-training quantisation of the net (int8 weights per channel, int8 '
            'activations); uint8 image input and float32 outputs kept, resizing, '
            'normalisation, box decoding and NMS in float32'
        )
    if 'openvino_int8' in formats:
        calibration['openvino_scheme'] = openvino_model.INT8_SCHEME
    # Every format whose files there are, or will be, an export's: this export's and those the
    # records listed (their files are removed at the end, with --overwrite).
    pending = [fmt for fmt in FORMATS if fmt in formats or fmt in {f for f, _ in earlier.values()}]
    try:
        # Within the `try`: a Ctrl-C or SIGTERM as soon as it is there removes it too.
        atomic_io.write_json_atomic(
            os.path.join(output_dir, PENDING_FILE),
            {
                'note': 'an export into this folder that has not finished (export_ssd_network.py); '
                'it lists the files exports wrote here',
                'files': {fmt: FILES[fmt] for fmt in pending},
            },
        )
        # Every format from `prefix`, resolved once, read from a staged copy (hard links): a
        # training still running may write newer checkpoints during the export, or delete this one.
        with checkpoints.staged_copy(prefix, output_dir) as staged:
            meta = metadata(
                card,
                formats,
                batch_size,
                fixed_size,
                tflite_batch_size,
                calibration,
                {
                    'path': os.path.abspath(prefix),
                    'step': checkpoints.checkpoint_step(staged),
                    'moving_averages': bool(moving_average_decay),
                },
            )
            step = meta['export']['checkpoint']['step']
            note = checkpoints.unused_averages_note(staged, moving_average_decay, card)
            if moving_average_decay:
                # Refuses a checkpoint without averages (restore_variables), before the log line.
                staged = detection.write_averaged_weights(card, staged, moving_average_decay)
            weights = ', the moving averages of its weights' if moving_average_decay else ''
            log(f'exporting {prefix} (step {step}{weights}): {", ".join(formats)}')
            if note:
                log(note)
            written = {}
            if 'frozen_graph' in formats or 'saved_model' in formats:
                with _restored(card, staged, batch_size, fixed_size) as restored:
                    if 'frozen_graph' in formats:
                        graph_def = detection.freeze(restored[1], detection.OUTPUTS)
                        embedded_card.add_to_graph_def(graph_def, meta)
                        written['frozen_graph'] = os.path.join(output_dir, FILES['frozen_graph'])
                        # Map fields (node attributes) in a fixed order: the same checkpoint
                        # exports to the same bytes (and digest).
                        atomic_io.write_bytes_atomic(
                            written['frozen_graph'],
                            graph_def.SerializeToString(deterministic=True),
                        )
                    if 'saved_model' in formats:
                        written['saved_model'] = os.path.join(output_dir, FILES['saved_model'])
                        _write_saved_model(written['saved_model'], card, meta, restored)
            for fmt, images in (('tflite_float', None), ('tflite_int8', calibration_images)):
                if fmt in formats:
                    model = embedded_card.add_to_tflite(
                        tflite_model(card, staged, tflite_batch_size, fixed_size, images), meta
                    )
                    written[fmt] = os.path.join(output_dir, FILES[fmt])
                    atomic_io.write_bytes_atomic(written[fmt], model)
            openvino_paths = {
                fmt: os.path.join(output_dir, FILES[fmt])
                for fmt in ('openvino', 'openvino_int8')
                if fmt in formats
            }
            if openvino_paths:
                written.update(
                    openvino_model.write(
                        card, staged, openvino_paths, meta, calibration_images, fixed_size
                    )
                )
        # The size and sha256 of each model file beside metadata.json, which loaders check it
        # against (`card.check_model_files`); the SavedModel records its own.
        names = [
            name
            for fmt in written
            if fmt != 'saved_model'
            for name in [FILES[fmt]] + EXTRA_FILES.get(fmt, [])
        ]
        digests = _digests(output_dir, names)
        _write_sidecars(output_dir, card, {**meta, card_lib.FILE_DIGESTS: digests})
    except BaseException:
        _remove_unused_pending(output_dir)  # else it stays, naming the files written
        raise
    for fmt, path in written.items():
        log(f'wrote {fmt}: {path}')
    log(
        f'wrote {os.path.join(output_dir, detection.METADATA_FILE)} and '
        f'{os.path.join(output_dir, detection.ANCHORS_FILE)}'
    )
    if overwrite:
        remove_stale_formats(output_dir, formats, earlier, log)
    os.remove(os.path.join(output_dir, PENDING_FILE))
    return written
