r"""Runs an SSD detector on images, folders, globs or videos; writes annotated files and a JSON.

    python detect_ssd_network.py --checkpoint_path=train/ --input=photos/,more/*.png,clip.mp4 \
        --output_dir=detections
    python detect_ssd_network.py --saved_model_dir=export/saved_model --input=photos/ --output_dir=out
    python detect_ssd_network.py --frozen_graph=export/frozen_graph.pb --input=a.jpg --output_dir=out
    python detect_ssd_network.py --tflite_model=export/model_int8.tflite --input=photos/ \
        --output_dir=out
    python detect_ssd_network.py --openvino_model=export/model_openvino.xml \
        --openvino_precision=bf16 --input=photos/ --output_dir=out

One graph and one session for the whole run; images are batched (--batch_size, any sizes: the
graph resizes them; the images of one batch are run in groups of one size, so no batch is
padded to its largest image; a TFLite model runs them one per call, see
`detection.TFLiteImageDetector`). A model exported with --fixed_size takes the net's input size
only: images of other sizes fail, one line each naming the size it takes
(`detection.check_fixed_size`), and the others are detected on.
Outputs in --output_dir: `<name>_det.<ext>` per image, `<name>_det.mp4` per video, and
`detections.json`: per image its size and detections in ORIGINAL-image pixel coordinates (`xmin
= clip(box_xmin, 0, 1) * width`, continuous, clipped to the image as evaluation clips the boxes
it scores) with class name (`label`), the model's label (`label_id`, 1..C-1), score and, where
the model card has category ids (trained on COCO records, or converted from torchvision's COCO
SSD or with Caffe SSD's COCO label map), the class's COCO category id (`category_id`, the id
pycocotools results and the TF Object Detection API use), per video its frames' `width` and
`height` (which its pixel boxes are in), `fps`, `num_frames` (decoded and detected on),
`container_frames` (the count the file claims, or null) and the same per frame, the files that
could not be read (`failures`), and the speed. An annotated image labels its 300 best-scoring
detections (`visualization.MAX_LABELS`; more, e.g. with --select_threshold=0 --keep_top_k=0, get
their boxes only, noted once);
`detections.json` has every detection.
Unreadable files are reported and skipped; the exit status is 0 when at least one image (or
frame) was processed; when none is, it is 1 and nothing is written (no detections.json, no
--output_dir created). An --input entry that does not exist (a path, or a glob matching nothing)
is refused before the model loads.
A JPEG over the 100-megapixel image limit is decoded at 1/2, 1/4 or 1/8 size, the largest that
fits (`detection.load_image`; one `note:` line each): the net sees a resized image anyway. Its
annotated image is at that reduced size; `detections.json` gives its original size and
original-pixel coordinates. Other images over the limit are refused.
No input and no file this script did not write is overwritten: an output name that is taken (an
input, e.g. with --output_dir equal to an input folder, or any other file that the folder's
earlier `detections.json` does not list as the output of one of its inputs, named as this script
names that input's output) gets `_1`, `_2`, ... instead; a `detections.json` that is not ours
stops the run before anything is written. The outputs that a folder's records list are not
inputs: a folder or glob of --input skips them (a file named alone is detected on), so the same
command run again, also with --output_dir equal to the input folder, writes the same names.
While it runs, `.detections_pending.jsonl` in --output_dir names each output as it is written
(one line per file, appended); `detections.json` replaces it at the end. A run that was
interrupted (Ctrl-C, killed) leaves it (one stopped before its first output removes it), so
running the same command again recognises those files as its own and writes the same names over
them, as an uninterrupted run would. The outputs of earlier runs that a run does not write again
(a run on fewer inputs) stay listed, under `kept_outputs` in `detections.json`, so a later run
recognises them too. A second run into the same --output_dir while one runs stops at its start,
naming the first (the folder's lock, `.ssd.lock`: tf_extended/folder_lock.py).

Exported models keep the NMS settings they were exported with; --select_threshold and
--keep_top_k then filter their output (they cannot lower the exported threshold or raise its
keep_top_k); a higher --select_threshold is logged and recorded in detections.json, as for a
checkpoint.
"""

import math
import os
import time

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags
import cv2
import numpy as np

from datasets import dataset_factory
from inference import detection
from inference import detection_records as records
from inference import visualization
from model import card as card_lib
from model import checkpoints
from model import cli
from tf_extended import atomic_io
from tf_extended import folder_lock
from tf_extended import safe_io
from tf_extended import signals

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint_path', None, 'Checkpoint prefix, one of its files, or a directory.')
flags.DEFINE_string('saved_model_dir', None, 'A SavedModel of export_ssd_network.py.')
flags.DEFINE_string(
    'frozen_graph', None, 'A frozen graph of export_ssd_network.py (its metadata.json beside it).'
)
flags.DEFINE_string(
    'tflite_model',
    None,
    'A .tflite model of export_ssd_network.py, float or int8 (its metadata.json beside it).',
)
flags.DEFINE_string(
    'openvino_model',
    None,
    'An OpenVINO model (.xml, its .bin and metadata.json beside it) of export_ssd_network.py.',
)
flags.DEFINE_string(
    'exported_model',
    None,
    'Any export of export_ssd_network.py, by its file '
    'type: .xml (OpenVINO), .pb (frozen graph), .tflite, or a SavedModel folder.',
)
flags.DEFINE_enum(
    'openvino_precision',
    'fp32',
    ['fp32', 'bf16'],
    'OpenVINO arithmetic: bf16 '
    'on CPUs with AVX-512 BF16 or AMX (others keep fp32; the log says which ran).',
)
flags.DEFINE_string('dataset_name', None, 'Dataset registry name whose metadata names the classes.')
flags.DEFINE_string('dataset_split_name', 'test', 'Split of --dataset_name.')
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_string('input', None, 'Comma-separated image files, folders, globs or video files.')
flags.DEFINE_string('output_dir', None, 'Where annotated files and detections.json go.')
flags.DEFINE_integer(
    'batch_size',
    8,
    'Images (or frames) per batch; fewer where they would hold more than 100 million pixels '
    'together (detection.MAX_BATCH_PIXELS: a graph holds ~16 bytes per pixel). The images of '
    f'a batch run in one call per size. At most {cli.MAX_BATCH_SIZE}.',
    lower_bound=1,
    upper_bound=cli.MAX_BATCH_SIZE,
)
cli.define_model_flags(
    select_threshold=0.5,
    select_threshold_help=(
        'Detections scoring above it are drawn and written (checkpoints: also the NMS input '
        'threshold; exports keep the threshold they were exported with and are filtered by this '
        'one).'
    ),
)
cli.define_moving_average_flag()
flags.mark_flags_as_required(['input', 'output_dir'])

JSON_NAME = records.JSON_NAME
PENDING_NAME = records.PENDING_NAME
SOURCES = (
    'checkpoint_path',
    'saved_model_dir',
    'frozen_graph',
    'tflite_model',
    'openvino_model',
    'exported_model',
)


def load_exported_detector():
    """The detector of --saved_model_dir, --frozen_graph, --tflite_model, --openvino_model or
    --exported_model (whichever is set; the last by `detection.exported_model_kind`)."""
    kind, path = next((s, FLAGS[s].value) for s in SOURCES[1:] if FLAGS[s].value)
    if kind == 'exported_model':
        kind = detection.exported_model_kind(path)
    detector = detection.open_exported_model(path, kind, FLAGS.openvino_precision)
    if kind == 'openvino_model':
        print(
            f'OpenVINO {FLAGS.openvino_precision} requested: computes in {detector.precision} '
            f'on this CPU ({detector.matrix_units})'
            + (', its quantised convolutions in int8' if detector.int8 else '')
        )
    return detector


def _taken(flag):
    """What an exported-model flag takes, for its refusals."""
    if flag == 'exported_model':
        return 'a model file or SavedModel folder'
    return checkpoints.export_kind_text(flag)


def check_model_source():
    """Refuses, before the inputs are read, --output_dir is locked or a model loads: other than
    exactly one model flag; --moving_average_decay with an exported model; an exported model's
    path that does not exist; a folder given where a model file is expected (naming the file in
    it to pass, e.g. an export folder's frozen_graph.pb) and a file where a SavedModel folder
    is."""
    sources = [s for s in SOURCES if FLAGS[s].value]
    if len(sources) != 1:
        raise ValueError(
            f'give exactly one of {", ".join("--" + s for s in SOURCES)} '
            f'(got {", ".join("--" + s for s in sources) or "none"}).'
        )
    flag = sources[0]
    path = FLAGS[flag].value
    kind = None if flag == 'checkpoint_path' else flag
    if flag == 'exported_model':  # an unknown file type is refused below, or when it loads
        kind = detection.file_kind(path) or flag
    cli.check_precision_flags(kind)
    if flag == 'checkpoint_path':
        return  # its own errors (model/checkpoints.py) name the files to pass
    if FLAGS.moving_average_decay:
        raise ValueError(
            '--moving_average_decay selects the moving averages of a checkpoint '
            '(--checkpoint_path); an exported model holds the weights it was exported with '
            '(its metadata.json: export.checkpoint.moving_averages).'
        )
    given = f'--{flag}={path}'
    if not os.path.lexists(path):
        raise ValueError(f'{given}: no such file or folder; pass {_taken(flag)}.')
    folder = detection.saved_model_folder(path)
    if folder:
        raise ValueError(
            f'{given} is the graph file of the SavedModel folder {folder}; pass '
            f'--saved_model_dir={folder} (or --exported_model={folder}).'
        )
    is_saved_model = os.path.isfile(os.path.join(path, 'saved_model.pb'))
    if flag == 'saved_model_dir' and not os.path.isdir(path):
        kind = detection.file_kind(path)
        fix = f'pass --{kind}={path}' if kind else 'pass the saved_model folder an export wrote'
        raise ValueError(f'{given} is a file, not a SavedModel folder; {fix}.')
    if not os.path.isdir(path) or (
        is_saved_model and flag in ('saved_model_dir', 'exported_model')
    ):
        return
    if is_saved_model:
        raise ValueError(
            f'{given} is a SavedModel folder, not {_taken(flag)}; pass '
            f'--saved_model_dir={path} (or --exported_model={path}).'
        )
    models = detection.exports_in(path)
    wanted = [m for m, kind in models.items() if flag in ('exported_model', kind)]
    what = 'an export folder' if os.path.isfile(os.path.join(path, 'metadata.json')) else 'a folder'
    if wanted:
        fix = 'pass ' + ' or '.join(f'--{flag}={m}' for m in wanted)
        raise ValueError(f'{given} is {what}, not {_taken(flag)}; {fix}.')
    if models:
        fix = 'it holds none; pass ' + ' or '.join(f'--{k}={m}' for m, k in models.items())
    else:
        fix = 'it holds no export of export_ssd_network.py; pass the model file an export wrote'
    raise ValueError(f'{given} is {what}, not {_taken(flag)}: {fix}.')


def make_detector():
    dataset = None
    if FLAGS.dataset_name:
        dataset = dataset_factory.get_dataset(
            FLAGS.dataset_name, FLAGS.dataset_split_name, FLAGS.dataset_dir
        )
    values = cli.ModelFlags.from_flags()
    if FLAGS.checkpoint_path:
        card_path = values.model_card or card_lib.find_for_checkpoint(FLAGS.checkpoint_path)
        card = cli.resolve_card(values, FLAGS.checkpoint_path, dataset)
        detector = detection.Detector.from_checkpoint(
            card,
            FLAGS.checkpoint_path,
            card_path=card_path,
            moving_average_decay=FLAGS.moving_average_decay,
        )
    else:
        detector = load_exported_detector()
        cli.check_exported_structure(detector.card, values, detector.card_source)
        exported = detector.card.detection
        if values.labels_file:
            detector.card = cli.with_labels_file(detector.card, values.labels_file)
        if FLAGS.select_threshold < exported.select_threshold:
            print(
                f'note: the model was exported with select_threshold '
                f'{exported.select_threshold}; lower scores are not available.'
            )
        elif FLAGS.select_threshold > exported.select_threshold:
            # As `cli.resolve_card` logs it for a checkpoint; detections.json gives what applied.
            changed = {'select_threshold': FLAGS.select_threshold}
            print(cli.detection_changes_line(exported, changed, values.given))
            detector.card = detector.card.with_detection(select_threshold=FLAGS.select_threshold)
        if FLAGS.nms_threshold is not None and FLAGS.nms_threshold != exported.nms_threshold:
            raise ValueError(
                f'the model was exported with nms_threshold '
                f'{exported.nms_threshold}; export it again to change it.'
            )
    return detector


class _VideoNotWritable(Exception):
    """OpenCV could not open a video writer (codec, frame size)."""


class Run:
    """Accumulates the results of the run and times the detector.

    inputs: the paths of the run's inputs, never written over; earlier: the files earlier runs
    wrote to `output_dir`, with their inputs (`earlier_outputs`), the only existing files an
    output may replace; record: the `OutputRecord` each output is added to once written (None:
    none kept).
    """

    def __init__(self, detector, output_dir, inputs=(), earlier=(), record=None):
        self.detector = detector
        self.output_dir = output_dir
        self.images, self.videos, self.failures = [], [], []
        self.num_processed = 0
        self.non_finite = 0  # detections dropped for a box that is not finite
        self.detect_seconds = 0.0
        self._outputs = set()
        self._written = set()
        self._inputs = {os.path.realpath(p) for p in inputs}
        self._earlier = dict(earlier)
        self._record = record
        self._labels_noted = False

    def detect(self, images):
        """Detections of the images (any sizes), each size group in one call: a batch of mixed
        sizes is never padded to its largest image (memory stays that of the images). Raises
        the ValueError of the first group the model failed on (see `detect_groups`)."""
        results = self.detect_groups(images)
        for result in results:
            if isinstance(result, ValueError):
                raise result
        return results

    def detect_groups(self, images):
        """Per image its detections as `detect` gives them, or the ValueError of its size
        group where the model failed on it (ModelRunError) or does not take its size (a model
        exported with --fixed_size: `detection.WrongSizeError`); the other groups still run."""
        start = time.perf_counter()
        groups = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        detections = [None] * len(images)
        for indices in groups.values():
            try:
                found = self.detector.detect([images[i] for i in indices])
            except ValueError as err:
                found = [err] * len(indices)
            for i, dets in zip(indices, found):
                detections[i] = dets
        self.detect_seconds += time.perf_counter() - start
        kept = []
        for dets in detections:
            if isinstance(dets, ValueError):
                kept.append(dets)
                continue
            self.num_processed += 1
            # A barely trained model's box codes decode to inf: no box to draw or record.
            finite = np.isfinite(dets['boxes']).all(axis=-1)
            if not finite.all():
                self.non_finite += int((~finite & (dets['scores'] > FLAGS.select_threshold)).sum())
                dets = {k: v[finite] for k, v in dets.items()}
            kept.append(detection.filter_detections(dets, FLAGS.select_threshold, FLAGS.keep_top_k))
        return kept

    def output_path(self, path):
        name, n = records.output_name(path), 0
        # Taken: the same name from another input folder, an input, a file not ours.
        while name in self._outputs or not self._may_write(os.path.join(self.output_dir, name)):
            n += 1
            name = records.output_name(path, n)
        self._outputs.add(name)
        return os.path.join(self.output_dir, name)

    def _may_write(self, path):
        real = os.path.realpath(path)
        return real not in self._inputs and (not os.path.lexists(path) or real in self._earlier)

    def _written_out(self, path, out):
        """Records input `path`'s output `out` (a name `output_path` gave) once it is on disk,
        also when a Ctrl-C ended its write after the rename: the file was free or ours, so it is
        ours now."""
        name = os.path.basename(out)
        if name not in self._written and os.path.lexists(out):
            self._written.add(name)
            if self._record is not None:
                self._record.add(path, name)

    def kept_outputs(self):
        """`{'file': input, 'output': name}` of the files earlier runs wrote to the folder that
        this run did not write again and that are still there: detections.json keeps listing
        them as ours, by name order."""
        kept = {os.path.basename(real): file for real, file in self._earlier.items()}
        return [
            {'file': kept[name], 'output': name}
            for name in sorted(kept.keys() - self._written)
            if os.path.lexists(os.path.join(self.output_dir, name))
        ]

    def fail(self, path, error):
        message = str(error) if str(error).startswith(path) else f'{path}: {error}'
        if len(self._inputs) > 1:  # a lone input's failure is the run's error line
            print(f'skipped {message}')
        self.failures.append({'file': path, 'error': message})

    def draw(self, rgb, detections, path):
        """`rgb` with its detections drawn; the first image (or frame) of the run with more
        detections than get a label (`visualization.MAX_LABELS`) says so, once."""
        unlabelled = visualization.unlabelled_count(detections)
        if unlabelled and not self._labels_noted:
            self._labels_noted = True
            print(
                f'note: {path}: {len(detections["scores"])} detections; the annotated images '
                f'label the {visualization.MAX_LABELS} best-scoring of an image and draw the '
                f'others\' boxes only (this note comes once); {JSON_NAME} has them all.'
            )
        return visualization.draw_detections(rgb, detections, self.detector.card.class_names)

    def pixel_rows(self, detections, height, width):
        card = self.detector.card
        return detection.pixel_detections(
            detections, height, width, card.class_names, category_ids=card.category_ids
        )

    def flush_images(self, batch):
        """Detects on, draws and records `batch`, (path, `detection.LoadedImage`) pairs, and
        empties it."""
        if not batch:
            return
        paths, images = zip(*batch)
        batch.clear()
        # A size group the model failed on (ModelRunError, a size a --fixed_size model does not
        # take) fails its images; the others go on.
        detections = self.detect_groups([image.rgb for image in images])
        for path, image, dets in zip(paths, images, detections):
            if isinstance(dets, ValueError):
                self.fail(path, dets)
                continue
            out = self.output_path(path)
            drawn = self.draw(image.rgb, dets, path)
            ok, data = cv2.imencode(
                os.path.splitext(out)[1], cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
            )
            if not ok:
                raise RuntimeError(f'OpenCV could not encode {out}.')
            try:
                atomic_io.write_bytes_atomic(out, data.tobytes())
            finally:
                self._written_out(path, out)
            card = self.detector.card
            self.images.append(
                detection.image_record(path, out, image, dets, card.class_names, card.category_ids)
            )

    def video(self, path):
        try:
            safe_io.check_regular(path, 'video')  # OpenCV would block on a FIFO
        except OSError as err:
            self.fail(path, err)
            return
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            self.fail(path, 'OpenCV cannot open this video.')
            return
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        problem = detection.too_many_pixels(width, height)  # an image's limit, per frame
        if problem:
            capture.release()
            self.fail(path, f'its frames are {problem}; downscale the video.')
            return
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and fps > 0 else 25.0  # 0 where the container has none
        claimed = capture.get(cv2.CAP_PROP_FRAME_COUNT)  # the container's; 0 or -1 if unknown
        claimed = int(claimed) if math.isfinite(claimed) and claimed > 0 else None
        out = self.output_path(path)
        # A new file of a name of its own (not a fixed name, which could be a planted link);
        # OpenCV picks the container by the extension.
        writer, frames, batch, temp = None, [], [], None
        try:
            try:
                with signals.held():  # a Ctrl-C or SIGTERM as it is made: it is removed below
                    fd, temp = atomic_io.mkstemp_for(out, suffix='.mp4')
                    os.close(fd)
                while True:
                    ok, bgr = capture.read()
                    if ok:
                        batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    full = len(batch) == FLAGS.batch_size or (
                        batch and not detection.batch_fits([batch[0].shape] * (len(batch) + 1))
                    )
                    if batch and (not ok or full):
                        for rgb, dets in zip(batch, self.detect(batch)):
                            if writer is None:
                                frame_size = (rgb.shape[1], rgb.shape[0])
                                writer = cv2.VideoWriter(
                                    temp,
                                    cv2.VideoWriter_fourcc(*'mp4v'),
                                    fps,
                                    (rgb.shape[1], rgb.shape[0]),
                                )
                                if not writer.isOpened():
                                    raise _VideoNotWritable(
                                        f'OpenCV cannot write an MPEG-4 video of '
                                        f'{rgb.shape[1]}x{rgb.shape[0]} frames.'
                                    )
                            drawn = self.draw(rgb, dets, f'{path} frame {len(frames)}')
                            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                            frames.append(
                                {
                                    'frame': len(frames),
                                    'detections': self.pixel_rows(dets, *rgb.shape[:2]),
                                }
                            )
                        batch = []
                    if not ok:
                        break
            except (_VideoNotWritable, ValueError) as err:  # ValueError: the model failed
                frames = []
                error = str(err)
            else:
                error = 'no frame could be decoded.'
            finally:
                capture.release()
                if writer is not None:
                    writer.release()
            if not frames:
                self.fail(path, error)
                return
            try:
                atomic_io.replace(temp, out)
            finally:
                self._written_out(path, out)
        finally:
            # Not renamed into place: a part video (an error, a Ctrl-C or SIGTERM, also just
            # before the rename) or one without frames is no output.
            if temp is not None and os.path.lexists(temp):
                os.remove(temp)
        self.videos.append(
            {
                'file': path,
                'output': out,
                # Of the decoded frames, which the pixel boxes of `frames` are in (as an image's).
                'width': frame_size[0],
                'height': frame_size[1],
                'fps': fps,
                'num_frames': len(frames),
                'container_frames': claimed,
                'frames': frames,
            }
        )

    def num_detections(self):
        """Detections kept in every image and video frame processed so far."""
        frames = [frame for video in self.videos for frame in video['frames']]
        return sum(len(item['detections']) for item in self.images + frames)

    def summary(self, seconds):
        return {
            'model': self.detector.card.to_dict(),
            'num_processed': self.num_processed,
            'images_per_second': self.num_processed / seconds if seconds else None,
            'detector_images_per_second': (
                self.num_processed / self.detect_seconds if self.detect_seconds else None
            ),
            'images': self.images,
            'videos': self.videos,
            'failures': self.failures,
            'kept_outputs': self.kept_outputs(),
        }


def describe_source(detector):
    """One line naming what detects: the restored checkpoint, its step and which of its weights
    (and a note on a second line when it holds moving averages left unused), or the exported
    model, its card and the step it was exported from (and a note on a second line when its
    metadata.json could not be checked against it)."""
    if FLAGS.checkpoint_path:
        prefix = detector.checkpoint
        try:
            step = checkpoints.checkpoint_step(prefix)
            note = checkpoints.unused_averages_note(
                prefix, FLAGS.moving_average_decay, detector.card
            )
        except checkpoints.CheckpointUnavailable:  # deleted since it was restored (a training)
            step, note = checkpoints.checkpoint_step_from_name(prefix), None
        weights = ', the moving averages of its weights' if FLAGS.moving_average_decay else ''
        return f'checkpoint {prefix} (step {step}{weights})' + (f'\n{note}' if note else '')
    path = next(FLAGS[s].value for s in SOURCES[1:] if FLAGS[s].value)
    step = detector.export_step
    exported = '' if step is None else f', exported at step {step}'
    # A metadata.json of an earlier export, which could not be checked against the model.
    note = f'\n{detector.note}' if getattr(detector, 'note', None) else ''
    return f'model {path}: {card_lib.describe(detector.card)}{exported}{note}'


def main(_):
    logs.absl_only()
    # TF's restore line for a checkpoint, and for a SavedModel its variables/variables file:
    # `describe_source` names what was loaded.
    logs.drop_tensorflow_messages(checkpoints.RESTORE_RECORD)
    try:
        # What needs no model and writes nothing, before --output_dir is locked (created): the
        # flags, the model's path, an --input entry that does not exist or gives no file.
        cli.check_model_flags(cli.ModelFlags.from_flags())
        check_model_source()
        if FLAGS.dataset_name:
            dataset_factory.check_dataset_name(FLAGS.dataset_name)
        detection.expand_inputs(FLAGS.input)
    except (ValueError, OSError) as err:
        logs.exit_error(err)
    lock = folder_lock.FolderLock(FLAGS.output_dir)
    try:
        try:
            # Before the pending record is read: two runs into one folder lost each other's
            # lines of it, and each detections.json listed only its own images. A Ctrl-C or
            # SIGTERM as it is taken: released below.
            with signals.held():
                lock = folder_lock.acquire(FLAGS.output_dir, '--output_dir', 'detection run')
        except (ValueError, OSError) as err:
            logs.exit_error(err)
        _detect()
    finally:
        lock.release()


def _detect():
    """`main` with the folder locked."""
    try:
        earlier, pending = records.earlier_outputs(FLAGS.output_dir)
        inputs, skipped, others = detection.expand_inputs(
            FLAGS.input, lambda folder: records.outputs_in(folder, FLAGS.output_dir, earlier)
        )
        if skipped:
            print(
                f'skipped {skipped} file(s) of --input that earlier runs of this script wrote '
                f'(listed as outputs by the {JSON_NAME} or {PENDING_NAME} of their folder)'
            )
        if others:
            print(
                f'note: left out what the --input folders hold besides images and videos '
                f'({detection.media_extensions_line()}): {detection.describe_others(others)}'
            )
        detector = make_detector()
        print(describe_source(detector))
    except (ValueError, OSError, checkpoints.CheckpointUnavailable) as err:
        logs.exit_error(err)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    # An interrupted run's outputs stay recorded until a detections.json lists them.
    carried = [(file, os.path.basename(p)) for p, file in pending.items() if os.path.lexists(p)]
    record = None
    try:
        # Made under the hold, dropped on the way out where it names no output: a run stopped
        # before its first one left an empty record (and the folder it made) that read as
        # outputs written.
        with signals.held():
            record = records.OutputRecord(FLAGS.output_dir, carried)
        run = Run(detector, FLAGS.output_dir, inputs, earlier, record)
        seconds = _detect_inputs(run, detector, inputs)
        failed = ''.join(f'\n  {f["error"]}' for f in run.failures)
        if run.num_processed == 0:
            # Nothing detected, so nothing written: a detections.json without images would read
            # as a run that found nothing, and would replace an earlier run's. The folder stays
            # as it was (the record goes below, one this run created with its lock); the
            # failures were printed above.
            if len(run.failures) == 1:
                failed = f' {run.failures[0]["error"]}'
            logs.exit_error(
                f'no image processed ({len(run.failures)} failed), '
                f'nothing written to {FLAGS.output_dir}:{failed}'
            )
    except BaseException:
        if record is not None:
            record.abandon()
        raise
    summary = run.summary(seconds)
    json_path = os.path.join(FLAGS.output_dir, JSON_NAME)
    atomic_io.write_json_atomic(json_path, summary)
    record.finish()
    speed = summary['images_per_second']
    print(
        f'processed {run.num_processed} image(s)/frame(s) in {seconds:.2f} s ({speed:.1f} '
        f'images/s overall, {summary["detector_images_per_second"]:.1f} images/s in the '
        f'detector); {len(run.failures)} failed{failed}\nwrote {json_path}'
    )
    if run.num_detections() == 0:
        print(detection.no_detection_note(detector.card.detection.select_threshold))
    if run.non_finite:
        print(
            f'note: {run.non_finite} detection(s) above --select_threshold had a box that is not '
            f'finite (its codes overflow when decoded: a barely trained or broken model) and '
            f'were left out'
        )


def _detect_inputs(run, detector, inputs):
    """Runs `detector` on `inputs` (files: images and videos) through `run`; returns the
    seconds it took."""
    start = time.perf_counter()
    batch = []
    with detector:
        for path in inputs:
            if detection.is_video(path):
                run.flush_images(batch)
                run.video(path)
                continue
            try:
                image = detection.load_image(path)
            except ValueError as err:
                run.fail(path, err)
                continue
            if image.note:
                print(f'note: {image.note}')
            if not detection.batch_fits([im.rgb.shape for _, im in batch] + [image.rgb.shape]):
                run.flush_images(batch)
            batch.append((path, image))
            if len(batch) == FLAGS.batch_size:
                run.flush_images(batch)
        run.flush_images(batch)
    return time.perf_counter() - start


def _interrupted():
    if not os.path.lexists(os.path.join(FLAGS.output_dir, PENDING_NAME)):
        return f'nothing was written to {FLAGS.output_dir}'  # stopped before detecting
    return (
        f'the annotated images and videos written so far are in {FLAGS.output_dir}, '
        f'{JSON_NAME} was not written ({PENDING_NAME} names them); run the same command again: '
        f'it writes the same names over them'
    )


if __name__ == '__main__':
    logs.run(main, _interrupted)
