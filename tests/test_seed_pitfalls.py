"""Traps of older SSD ports (mostly the older TF port this project keeps the variable names of)
that are right here and must stay so: conv4_3's L2 normalisation scale 20, no dropout in the VGG
nets, Adam's epsilon 1e-8, hue jitter within 18 degrees, --label_smoothing reaching the loss, soft
placement for GPU clones without GPUs, NHWC by default, the README's fine-tuning scopes, and one
detection session for a whole run."""

import json
import os
import re
import shlex

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inference import detection
from model import checkpoints
from nets import losses as losses_lib
from nets import nets_factory
from nets.ssd_common import flatten_layers
from preprocessing import photometric
from preprocessing import preprocessing_factory
from preprocessing.seeds import SeedStream
from tests import data_fixtures
from tests import inference_fixtures as fx
from tests.conftest import ROOT, run_python, run_script
from tests.test_preprocessing_helpers import run_graph
from tests.train_fixtures import tiny_settings, train_graph
from training import trainer

v1 = tf.compat.v1

GAMMA = 'block4_box/L2Normalization/gamma'


def _flag_default(help_text, name):
    """The `(default: '...')` of `--name` in absl's --helpfull text (None without one)."""
    match = re.search(r'--%s:(?:(?!\n\s*--).)*?\(default: \'([^\']*)\'\)' % name, help_text, re.S)
    return match and match.group(1)


@pytest.fixture(scope='module')
def train_help():
    """train_ssd_network.py --helpfull (the script itself, as a user runs it)."""
    proc = run_script('train_ssd_network.py', '--helpfull')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# The VGG nets: L2 normalisation scale, no dropout.


@pytest.fixture(scope='module')
def training_nets():
    """`get(model_name)`: the net built in training mode (21 classes) on a `[1, size, size, 3]`
    placeholder, (graph, images placeholder, logits, localisations), built once per net for the
    module's tests (the gamma, dropout and README recipe tests)."""
    built = {}

    def get(model_name):
        if model_name not in built:
            graph = tf.Graph()
            with graph.as_default():
                _, network_fn = nets_factory.get_network_fn(model_name, 21, is_training=True)
                size = 512 if '512' in model_name else 300
                images = v1.placeholder(tf.float32, [1, size, size, 3])
                _, localisations, logits, _ = network_fn(images)
            built[model_name] = (graph, images, logits, localisations)
        return built[model_name]

    return get


@pytest.fixture(scope='module')
def vgg300_training(training_nets):
    """ssd_300_vgg built in training mode, initialised: (session, images placeholder, logits,
    localisations), shared by the gamma and dropout tests."""
    graph, images, logits, localisations = training_nets('ssd_300_vgg')
    with graph.as_default():
        sess = v1.Session(graph=graph)
        sess.run(v1.global_variables_initializer())
    yield sess, images, logits, localisations
    sess.close()


def _gamma(graph, scope):
    (gamma,) = [v for v in graph.get_collection('variables') if v.op.name == f'{scope}/{GAMMA}']
    return gamma


def test_conv4_3_l2_normalisation_scale_starts_at_20(vgg300_training, training_nets):
    """The older TF port initialised the conv4_3 L2 normalisation's gamma to 1 (a ones
    initializer; Caffe's SSD: 20): the block4 head then sees activations 20x too small and
    trains badly. Every channel of SSD300's and SSD512's gamma starts at 20."""
    sess = vgg300_training[0]
    gamma = sess.run(_gamma(sess.graph, 'ssd_300_vgg'))
    assert gamma.shape == (512,)
    np.testing.assert_array_equal(gamma, np.full(512, 20.0, np.float32))
    graph = training_nets('ssd_512_vgg')[0]
    gamma = _gamma(graph, 'ssd_512_vgg')
    with v1.Session(graph=graph) as sess:
        sess.run(gamma.initializer)
        np.testing.assert_array_equal(sess.run(gamma), np.full(512, 20.0, np.float32))


def _forward_ops(outputs):
    """The ops the outputs are computed from (up to the variables: not their initialisers)."""
    seen, stack = set(), [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def test_vgg_training_graph_has_no_dropout(vgg300_training):
    """The older TF port put dropout after conv6 and conv7 in training mode; Caffe's SSD has
    none, and the converted Caffe weights were trained without it. The training-mode forward
    pass holds no dropout or random op, and two passes on one input are equal."""
    sess, images, logits, localisations = vgg300_training
    ops = _forward_ops(logits + localisations)
    assert any(op.type == 'Conv2D' for op in ops)
    noisy = sorted(
        op.name
        for op in ops
        if 'dropout' in op.name.lower() or 'Random' in op.type or 'random' in op.name.lower()
    )
    assert noisy == []
    batch = np.random.RandomState(0).uniform(-120, 150, (1, 300, 300, 3)).astype(np.float32)
    first = sess.run(logits + localisations, {images: batch})
    second = sess.run(logits + localisations, {images: batch})
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Optimizer and data format defaults.


def test_adam_epsilon_default_is_1e_8(train_help):
    """The older TF port's --opt_epsilon defaulted to 1.0 (TF-Slim's classifier default), which
    shrinks Adam's steps ~1000x for gradients of 1e-3: the trainer's Adam from the default
    settings (and the script's flag default) has epsilon 1e-8, and its first step of a
    variable with gradient 1e-4 is about the learning rate, not 3e-6 of it."""
    settings = trainer.TrainSettings()
    assert settings.optimizer == 'adam'
    with tf.Graph().as_default():
        opt, replication = trainer.optimizer(settings, 0.001, tf.float32, trainer.Cluster())
        assert replication is None
        assert isinstance(opt, v1.train.AdamOptimizer)
        assert opt._epsilon == 1e-8
        variable = v1.get_variable('x', initializer=np.zeros(3, np.float32))
        step = opt.apply_gradients([(tf.constant([1e-4, -1e-4, 1e-4]), variable)])
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(step)
            moved = sess.run(variable)
    # TF's Adam, first step: lr * sqrt(1 - beta2) / (1 - beta1) * m / (sqrt(v) + epsilon) with
    # m = (1 - beta1) g, v = (1 - beta2) g^2: 0.99685 lr here; 3.2e-6 lr with epsilon 1.
    g = np.float64(1e-4)
    want = 0.001 * np.sqrt(0.001) / 0.1 * (0.1 * g) / (np.sqrt(0.001) * g + 1e-8)
    np.testing.assert_allclose(moved, [-want, want, -want], rtol=1e-4)
    assert float(_flag_default(train_help, 'opt_epsilon')) == 1e-8


def test_nhwc_is_the_default_data_format(train_help):
    """The older TF port trained in NCHW (a constant of its train script), which TensorFlow's
    CPU kernels cannot run: the settings and train_ssd_network.py's --data_format default to
    NHWC."""
    assert trainer.TrainSettings().data_format == 'NHWC'
    assert trainer.TrainSettings.default('data_format') == 'NHWC'
    assert _flag_default(train_help, 'data_format') == 'NHWC'


# ---------------------------------------------------------------------------------------------
# Hue jitter.


def _hue(rgb):
    """OpenCV's hue (degrees) of float32 RGB 0-255 pixels."""
    return cv2.cvtColor(np.float32(rgb) / 255.0, cv2.COLOR_RGB2HSV)[..., 0]


# Hue 22.5 degrees, saturation and value away from 0 and 255 under every default brightness,
# contrast and saturation factor: only the hue step moves the hue.
COLOUR = (130.0, 80.0, 50.0)


def _training_pipeline(seed, image):
    """The training preprocessing with its default photometric settings; the geometry (zoom out,
    crop, flip) off and the output the input's size, so that the colour stays one colour."""
    pipeline = preprocessing_factory.get_preprocessing('ssd_300_vgg')
    out, _, _ = pipeline(
        image,
        tf.constant([1], tf.int64),
        tf.constant([[0.1, 0.1, 0.9, 0.9]]),
        image.shape[:2].as_list(),
        is_training=True,
        seed=seed,
        expand_prob=0.0,
        crop_min_ious=(),
        flip_prob=0.0,
    )
    return pipeline.denormalize(out)


@pytest.mark.parametrize(
    'distort',
    [
        _training_pipeline,
        lambda seed, image: photometric.random_distort(image, SeedStream(seed)),
    ],
    ids=['training_preprocessing', 'random_distort'],
)
def test_hue_jitter_stays_within_18_degrees(distort):
    """The older TF port rotated the hue by up to 0.2 of the circle (72 degrees: tf.image's
    random_hue), and Caffe's `hue_delta: 18` read as OpenCV 8-bit units is 36 degrees: the
    default jitter here is uniform in +-18 degrees, applied to half the images."""
    image = np.ones((6, 6, 3), np.float32) * np.float32(COLOUR)
    before = _hue(image)[0, 0]
    assert before == pytest.approx(22.5)
    outputs = run_graph(
        distort,
        np.array([0, 0], np.int64),
        image,
        feeds=[{0: np.array([5, i], np.int64)} for i in range(200)],
    )
    shifts = []
    for out in outputs:
        hue = _hue(out)
        assert np.ptp(hue) < 0.01, 'one shift per image'
        shifts.append((hue.mean() - before + 180.0) % 360.0 - 180.0)
    shifts = np.array(shifts)
    moved = np.abs(shifts) > 0.01
    assert 70 <= moved.sum() <= 130
    assert np.abs(shifts).max() <= 18.0 + 0.05
    assert shifts.max() > 16.0 and shifts.min() < -16.0


# ---------------------------------------------------------------------------------------------
# Training graphs: label smoothing, multi-clone soft placement.


class _Recorder:
    """Takes the place of the input iterator and of the net's loss to keep what the trainer
    passed them."""

    def __init__(self, iterator, net):
        self.batches, self.loss_calls = [], []
        self._iterator, self._losses = iterator, net.losses
        net.losses = self.losses

    def get_next(self):
        batch = self._iterator.get_next()
        self.batches.append(batch)
        return batch

    def losses(self, *args, **kwargs):
        self.loss_calls.append((args, kwargs))
        return self._losses(*args, **kwargs)


CLASS_TERMS = ('cross_entropy_pos', 'cross_entropy_neg')


def test_label_smoothing_reaches_the_loss():
    """The older TF port took --label_smoothing but its loss never applied it. Here the
    trainer's class terms with 0.1 differ from those with 0 on the same batch and weights, and
    equal `ssd_losses(label_smoothing=0.1)` computed apart on the net's logits and the targets
    (and those with 0 `ssd_losses` without smoothing)."""
    graph, _, log_tensors, recorder = train_graph(tiny_settings(label_smoothing=0.1), _Recorder)
    ((args, _),) = recorder.loss_calls
    logits, localisations, gclasses, glocalisations, gscores = args
    (batch,) = recorder.batches
    with graph.as_default(), v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        weights = sess.run({v.op.name: v for v in v1.global_variables()})
        smoothed, fed, outputs = sess.run(
            (
                log_tensors['losses'],
                batch,
                [flatten_layers(logits), flatten_layers(localisations)],
            )
        )
        targets = sess.run([gclasses, glocalisations, gscores], {batch[k]: fed[k] for k in fed})
    assert (targets[0] > 0).any(), 'no positive anchor in the batch'

    graph, _, log_tensors, recorder = train_graph(tiny_settings(label_smoothing=0.0), _Recorder)
    (batch,) = recorder.batches
    with graph.as_default(), v1.Session() as sess:
        variables = v1.global_variables()
        sess.run(
            [v.initializer for v in variables],
            {v.initializer.inputs[1]: weights[v.op.name] for v in variables},
        )
        plain = sess.run(log_tensors['losses'], {batch[k]: fed[k] for k in fed})
    assert plain['localization'] == pytest.approx(smoothed['localization'], rel=1e-5)
    for term in CLASS_TERMS:
        assert abs(smoothed[term] - plain[term]) > 1e-3 * plain[term], term

    with tf.Graph().as_default() as direct_graph:
        inputs = [tf.constant(a) for a in outputs + targets]
        for scope, smoothing in (('plain', 0.0), ('smoothed', 0.1)):
            losses_lib.ssd_losses(*inputs, label_smoothing=smoothing, scope=scope)
        with v1.Session() as sess:
            direct = sess.run(
                {
                    scope: {
                        t: direct_graph.get_tensor_by_name(f'{scope}/{t}:0') for t in CLASS_TERMS
                    }
                    for scope in ('plain', 'smoothed')
                }
            )
    for term in CLASS_TERMS:
        assert smoothed[term] == pytest.approx(direct['smoothed'][term], rel=1e-5), term
        assert plain[term] == pytest.approx(direct['plain'][term], rel=1e-5), term


def test_gpu_clones_train_without_gpus_by_soft_placement():
    """--num_clones=2 without --clone_on_cpu puts the clones on GPU:0 and GPU:1; without soft
    placement (the older TF port's session config had none) a machine with fewer GPUs fails
    with InvalidArgumentError ('Cannot assign a device'). The trainer's session config allows
    it, and one step of 2 clones runs on this machine's CPU."""
    settings = tiny_settings(num_clones=2, clone_on_cpu=False, batch_size=1)
    config = trainer.session_config(settings)
    assert config.allow_soft_placement
    graph, train_op, log_tensors, _ = train_graph(settings, _Recorder)
    assert {op.device for op in graph.get_operations()} >= {'/device:GPU:0', '/device:GPU:1'}
    with graph.as_default(), v1.Session(config=config) as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(train_op)
        step, total = sess.run((log_tensors['global_step'], log_tensors['losses']['total']))
    assert step == 1 and np.isfinite(total)


# ---------------------------------------------------------------------------------------------
# The README's fine-tuning recipe.


def _readme_section(title):
    """README.md from the heading line `title` to the next heading (outside code blocks)."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        lines = f.read().splitlines()
    start = lines.index(title)
    fenced, end = False, len(lines)
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].startswith('```')
        if not fenced and re.match(r'#{1,4} ', lines[i]):
            end = i
            break
    return '\n'.join(lines[start:end]) + '\n'


def _commands(section):
    """The README commands (continuation lines joined) of `section`'s code blocks, as argv."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', section, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            if line.strip() and not line.lstrip().startswith('#'):
                commands.append(shlex.split(line))
    return commands


def _flag_values(argv):
    return dict(a[2:].split('=', 1) for a in argv if a.startswith('--') and '=' in a)


def _trainable_variables(training_nets, model_name):
    return training_nets(model_name)[0].get_collection(v1.GraphKeys.TRAINABLE_VARIABLES)


def _check_recipe(variables, model_name, trainable_scopes, exclude_scopes, checkpoint_model_scope):
    """Each scope names `variables` (the net's trainable ones); the trained variables are exactly
    those that the ImageNet checkpoint does not restore (the frozen ones are its backbone);
    nothing new is excluded from training."""
    for flag, text in (
        ('--trainable_scopes', trainable_scopes),
        ('--checkpoint_exclude_scopes', exclude_scopes),
    ):
        checkpoints.check_scopes_match(flag, text, variables)
        for scope in checkpoints.parse_scopes(text):
            assert any(checkpoints.in_scopes(v.op.name, [scope]) for v in variables), scope
    trained = {
        v.op.name for v in checkpoints.filter_variables(variables, include_scopes=trainable_scopes)
    }
    name_map = checkpoints.TF_SLIM_NAME_MAPS[checkpoint_model_scope]
    restored = {
        v.op.name
        for v in checkpoints.filter_variables(variables, exclude_scopes=exclude_scopes)
        if name_map(checkpoints.rewrite_leading_scope(v.op.name, model_name, '')[1:])
    }
    assert restored, 'the recipe restores nothing'
    assert not trained & restored, sorted(trained & restored)
    assert trained | restored == {v.op.name for v in variables}, sorted(
        {v.op.name for v in variables} - trained - restored
    )
    return trained, restored


def test_readme_vgg_fine_tuning_recipe_names_real_scopes(training_nets):
    """The older TF port matched these flags as bare, unchecked name prefixes: a README scope
    that named no variable, or one that also caught the backbone, silently trained (or
    restored) the wrong set. Each scope of the recipe names variables of the model it trains,
    and together they train everything but conv1..conv7 (restored from vgg_16, frozen)."""
    section = _readme_section('#### From the TF-Slim ImageNet VGG16 checkpoint')
    recipes = [_flag_values(c) for c in _commands(section)]
    recipes = [r for r in recipes if 'trainable_scopes' in r or 'checkpoint_exclude_scopes' in r]
    assert recipes, 'no fine-tuning command in the README section'
    for flags in recipes:
        model_name = flags['model_name']
        trained, restored = _check_recipe(
            _trainable_variables(training_nets, model_name),
            model_name,
            flags.get('trainable_scopes'),
            flags.get('checkpoint_exclude_scopes'),
            flags['checkpoint_model_scope'],
        )
        backbone = {
            name.split('/')[1] for name in restored if name.startswith(model_name + '/conv')
        }
        assert backbone == {'conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'conv6', 'conv7'}
        assert f'{model_name}/{GAMMA}' in trained


def test_readme_mobilenet_fine_tuning_scopes_are_real(training_nets):
    """The MobileNet recipe in words: `conv14_1,...,conv17_2` and the `*_mbox_loc` /
    `*_mbox_conf` heads under `ssd_300_mobilenet/` are trained, the MobilenetV1 backbone frozen."""
    section = _readme_section('#### From the MobileNet-V1 ImageNet checkpoint')
    model_name = re.search(r'--model_name=(\w+)', section).group(1)
    scope = re.search(r'--checkpoint_model_scope=(\w+)', section).group(1)
    first, last = re.search(r'`(conv\d+_\d),\.\.\.,(conv\d+_\d)`', section).groups()
    heads = re.findall(r'`\*(_\w+)`', section)
    assert f'prefixed with `{model_name}/`' in section
    low, high = (tuple(map(int, name[len('conv') :].split('_'))) for name in (first, last))
    extra = [
        f'conv{i}_{j}' for i in range(low[0], high[0] + 1) for j in (1, 2) if low <= (i, j) <= high
    ]
    variables = _trainable_variables(training_nets, model_name)
    layers = {v.op.name.split('/')[1] for v in variables}
    head_scopes = sorted(layer for layer in layers if layer.endswith(tuple(heads)))
    assert len(extra) == 8 and len(head_scopes) == 12, (extra, head_scopes)
    text = ','.join(f'{model_name}/{s}' for s in extra + head_scopes)
    _check_recipe(variables, model_name, text, None, scope)


# ---------------------------------------------------------------------------------------------
# Detection: one Detector, one session.


@pytest.fixture(scope='module')
def detect_inputs(tmp_path_factory):
    """A checkpoint of the small MobileNet-SSD, 5 images of 3 sizes and a 4-frame video."""
    root = tmp_path_factory.mktemp('detect_once')
    spec = fx.small_spec()
    prefix = fx.write_checkpoint(spec, str(root / 'ckpt'))
    sizes = [(120, 160), (200, 150), (120, 160), (97, 301), (200, 150)]
    images = fx.random_images(21, sizes)
    for i, image in enumerate(images):
        data_fixtures.write_image(str(root / 'images' / f'img{i}.png'), image, '.png')
    video = str(root / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (160, 120))
    for frame in fx.random_images(22, [(120, 160)] * 4):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return dict(spec=spec, prefix=prefix, images=images, root=root, video=video)


class _Counts:
    """Counts `tf.compat.v1.Session`s (the inference module's `v1.Session`) and `Detector`s."""

    def __init__(self, monkeypatch):
        self.sessions = self.detectors = 0
        counts = self
        session = detection.v1.Session

        class CountingSession(session):
            def __init__(self, *args, **kwargs):
                counts.sessions += 1
                super().__init__(*args, **kwargs)

        init = detection.Detector.__init__

        def counting_init(self, *args, **kwargs):
            counts.detectors += 1
            init(self, *args, **kwargs)

        monkeypatch.setattr(detection.v1, 'Session', CountingSession)
        monkeypatch.setattr(detection.Detector, '__init__', counting_init)


def test_detector_runs_every_batch_in_one_session(detect_inputs, monkeypatch):
    """Older ports' detection demos opened a tf.Session (and rebuilt the graph) per image. A
    Detector holds one graph and one session for all its calls."""
    counts = _Counts(monkeypatch)
    images = detect_inputs['images']
    with detection.Detector.from_checkpoint(detect_inputs['spec'], detect_inputs['prefix']) as d:
        first = d.detect(images[:2])
        for image in images:
            d.detect([image])
        again = d.detect(images[:2])
    assert (counts.detectors, counts.sessions) == (1, 1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a['scores'], b['scores'])


DETECT_COUNTING = r"""
import json
import runpy
import sys

from inference import detection

counts = {'sessions': 0, 'detectors': 0, 'detect_calls': 0}
Session = detection.v1.Session


class CountingSession(Session):
    def __init__(self, *args, **kwargs):
        counts['sessions'] += 1
        super().__init__(*args, **kwargs)


init, detect = detection.Detector.__init__, detection.Detector.detect


def counting_init(self, *args, **kwargs):
    counts['detectors'] += 1
    init(self, *args, **kwargs)


def counting_detect(self, images):
    counts['detect_calls'] += 1
    return detect(self, images)


detection.v1.Session = CountingSession
detection.Detector.__init__ = counting_init
detection.Detector.detect = counting_detect
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
finally:
    print('COUNTS ' + json.dumps(counts))
"""


def test_detect_script_builds_one_detector_and_one_session(detect_inputs):
    """detect_ssd_network.py on 5 images and a video, 2 at a time: one Detector and one
    session for the whole run (counted on the inference module in the script's process)."""
    root = detect_inputs['root']
    proc = run_python(
        DETECT_COUNTING,
        os.path.join(ROOT, 'detect_ssd_network.py'),
        f'--checkpoint_path={detect_inputs["prefix"]}',
        '--model_name=ssd_300_mobilenet',
        '--depth_multiplier=0.25',
        f'--num_classes={fx.NUM_CLASSES}',
        f'--input={root / "images"},{detect_inputs["video"]}',
        f'--output_dir={root / "out"}',
        '--batch_size=2',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith('COUNTS ')]
    counts = json.loads(line[len('COUNTS ') :])
    result = json.loads((root / 'out' / 'detections.json').read_text())
    assert len(result['images']) == 5 and len(result['videos']) == 1, proc.stdout
    assert counts['detect_calls'] >= 5, counts
    assert (counts['detectors'], counts['sessions']) == (1, 1), counts
