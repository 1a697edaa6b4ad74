"""What the command-line scripts print: TensorFlow's start-up lines off, each log record once,
`--help` exiting 0, and Ctrl-C or SIGTERM ending with one line instead of a traceback or nothing.

The scripts import this module before TensorFlow. What TF 2.21 writes to stderr before a script
logs anything, measured on a CPU-only machine (2026-12, `import tensorflow` and one session):

  TF_CPP_MIN_LOG_LEVEL unset: 8 lines
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU ...
    To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow ...
    WARNING: All log messages before absl::InitializeLog() ... (again: TF holds two absl copies)
    I... cudart_stub.cc:31] Could not find cuda drivers ... (again)
    E... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... (303)
    I... mlir_graph_optimization_pass.cc:437] MLIR V1 optimization pass is not enabled
  TF_CPP_MIN_LOG_LEVEL=2: 5 lines (both absl warnings, both cudart_stub lines, the E-level
    cuInit line); =3: 4 (the cuInit line goes, and with it every other TF error line).
  CUDA_VISIBLE_DEVICES='' changes nothing: the stub and the probe run anyway.
  Where oneDNN is on (TF's default on CPUs with AVX-512 VNNI/BF16 or AMX, or
  TF_ENABLE_ONEDNN_OPTS=1), at any level, twice:
    I... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

The absl warning, the cudart_stub and the oneDNN lines are written before TF reads any
setting, so no environment variable stops them. Hence two measures, both off when the user set
TF_CPP_MIN_LOG_LEVEL below 2 (asking to see TF's lines) or SSD_STDERR_FILTER=0:
- TF_CPP_MIN_LOG_LEVEL=2 unless set: TF's C++ INFO and WARNING lines off, its errors shown;
- a filter on file descriptor 2 (`install_stderr_filter`): a forked helper process reads what
  the script writes to stderr and passes on everything but those exact lines (the cuInit error
  only where no NVIDIA device exists: /dev/nvidiactl, /dev/nvidia0, WSL's /dev/dxg), and the
  settings line TFLite's int8 calibrator prints ("fully_quantize: 0, inference_type: 6, ...")
  and the line its interpreter prints when it loads a model ("INFO: Created TensorFlow Lite
  XNNPACK delegate for CPU."), and gRPC's two error lines on a cluster port in use ("Failed to
  add port to server", "Could not start gRPC server"), which `training.cluster.start_server`
  always turns into one line naming the task and the address.
  Being a separate process, it still passes on the last words of a script that crashes or is
  killed.
  Installed for the project's top-level scripts and benchmarks only (or when
  SSD_STDERR_FILTER=1).

For the same scripts it also makes TensorFlow's import skip Keras (about 2 s of start-up, see
`skip_keras_at_tensorflow_import`).
"""

import atexit
import difflib
import logging as py_logging
import os
import re
import signal
import sys
import time
import warnings

from absl import app
from absl import flags
from absl import logging

from tf_extended import signals

_GPU_DEVICE_NODES = ('/dev/nvidiactl', '/dev/nvidia0', '/dev/dxg')
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT_FOLDERS = (_PROJECT_ROOT, os.path.join(_PROJECT_ROOT, 'benchmarks'))
# absl's C++ line format: level, MMDD, time, thread id, file:line] message.
_ABSL_CPP_LINE = re.compile(rb'^([IWEF])\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\] (.*)$')
_ABSL_PREAMBLE = (
    b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR'
)
_CUDA_PROBES = (b'cuda_platform.cc', b'cuda_executor.cc', b'cuda_diagnostics.cc')
# What TFLite's calibrator prints (C++, no log format) once per int8 conversion.
_TFLITE_CALIBRATION = re.compile(
    rb'^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, '
    rb'output_inference_type: \w+$'
)
_TFLITE_CALIBRATION_START = b'fully_quantize: '
# What the TFLite interpreter's runtime prints (C++, no log format) when a model is loaded.
_TFLITE_XNNPACK = b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.'
# What TF's gRPC server logs when its port is taken, before raising the error our cluster code
# reports in one line: {source file: message start}.
_GRPC_LISTEN_FAILURE = {
    b'add_port.cc': b'Failed to add port to server: ',
    b'grpc_server_lib.cc': b'UNKNOWN: Could not start gRPC server',
}


def quiet_tensorflow_start(environ=os.environ):
    """TF_CPP_MIN_LOG_LEVEL=2 unless set. Has an effect only before TensorFlow is imported."""
    environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


_KERAS_SETTING = 'TF_USE_LEGACY_KERAS'
_skipped_keras = []


def skip_keras_at_tensorflow_import(environ=os.environ):
    """Makes the next `import tensorflow` skip Keras; `restore_keras_setting` undoes it.

    TF 2.21's `__init__` imports Keras 3 eagerly (only to register Keras optimizers for
    SavedModels with Keras objects, which this project never writes), and Keras imports
    matplotlib.pyplot and, where installed, scikit-learn: about 2 of the 6 s `import
    tensorflow` takes on a 2-core machine (measured, 2026-12), paid by every script and
    worker. With TF_USE_LEGACY_KERAS=1 that import asks for tf_keras instead, which is not
    installed, and TF goes on without it. The variable is removed again before any code runs
    (`run_plain`), so `tf.keras`, resolved lazily on first use, is still Keras 3. No effect
    when TensorFlow is already imported or the user set the variable."""
    if 'tensorflow' not in sys.modules and _KERAS_SETTING not in environ:
        environ[_KERAS_SETTING] = '1'
        _skipped_keras.append(environ)


def restore_keras_setting():
    """Removes what `skip_keras_at_tensorflow_import` set (before any use of `tf.keras`)."""
    while _skipped_keras:
        _skipped_keras.pop().pop(_KERAS_SETTING, None)


def is_noise(line, gpu_device=False):
    """True for one of TF's lines that say nothing to a user: the start-up lines (see the module
    docstring), TFLite's calibration settings line and its interpreter's XNNPACK line, gRPC's
    lines on a port in use (said again in our own error line).

    line: bytes without the line end. gpu_device: an NVIDIA device exists (then a failing CUDA
    probe is news and is kept).
    """
    if line in (_ABSL_PREAMBLE, _TFLITE_XNNPACK) or _TFLITE_CALIBRATION.match(line):
        return True
    match = _ABSL_CPP_LINE.match(line)
    if not match:
        return False
    level, source, message = match.groups()
    if source == b'cudart_stub.cc' and message.startswith(b'Could not find cuda drivers'):
        return True
    if source == b'port.cc' and message.startswith(b'oneDNN custom operations are on'):
        return True
    grpc_start = _GRPC_LISTEN_FAILURE.get(source)
    if level == b'E' and grpc_start is not None and message.startswith(grpc_start):
        return True
    return not gpu_device and source in _CUDA_PROBES and level in b'IWE'


def _could_become_noise(tail):
    """A line still being written that may turn out to be a noise line: held back until its
    end; anything else (e.g. a progress bar redrawn with \\r) passes on at once."""
    return any(
        start.startswith(tail[: len(start)])
        for start in (_ABSL_PREAMBLE, _TFLITE_CALIBRATION_START, _TFLITE_XNNPACK)
    ) or bool(re.match(rb'^[IWEF](\d|$)', tail))


def filter_chunk(pending, gpu_device=False):
    """(bytes to write, bytes to hold) for the stderr bytes received so far (`pending`)."""
    out = []
    pieces = re.split(rb'(\r\n|\n|\r)', pending)
    tail = pieces.pop()  # after the last line end (maybe empty)
    for text, end in zip(pieces[0::2], pieces[1::2]):
        if not is_noise(text, gpu_device):
            out.append(text + end)
    if tail and not _could_become_noise(tail):
        out.append(tail)
        tail = b''
    return b''.join(out), tail


def _write_all(fd, data):
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return  # the reader of stderr is gone; nothing to do


def _filter_loop(read_fd, write_fd, gpu_device):
    pending = b''
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        out, pending = filter_chunk(pending + chunk, gpu_device)
        _write_all(write_fd, out)
    if pending and not is_noise(pending, gpu_device):
        _write_all(write_fd, pending)


def install_stderr_filter():
    """Routes file descriptor 2 through a forked filter process (see the module docstring).
    Returns the filter's pid, or None when not installed (no fork, or already installed)."""
    global _filter_pid
    if not hasattr(os, 'fork') or _filter_pid is not None:
        return None
    gpu_device = any(map(os.path.exists, _GPU_DEVICE_NODES))
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    # Ctrl-C, and a scheduler's SIGTERM to the process group, are for the script: the filter
    # ignores them (blocked until then, however soon they come) and ends with its writers,
    # after passing on the script's last line.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals.STOPS)
    pid = os.fork()
    if pid == 0:  # the filter: reads until every writer (the script, its children) is gone
        try:
            for signum in signals.STOPS:
                signal.signal(signum, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(write_fd)
            _filter_loop(read_fd, 2, gpu_device)
        finally:
            os._exit(0)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(read_fd)
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    _filter_pid = pid
    atexit.register(_drain_stderr_filter, pid, original)
    return pid


def _drain_stderr_filter(pid, original, timeout_secs=5.0):
    """At exit: stderr back to the original, and a short wait for the filter to pass on what it
    still holds (so a shell prompt does not come before the script's last line)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)  # closes our end of the pipe: the filter sees its end
    # multiprocessing's resource tracker (started by a script's worker processes) holds a copy of
    # the pipe until it ends, which it did only with this process: the filter saw no end, and
    # every such script waited the whole timeout (5 s) at exit. Stopped now, as it would be.
    tracker = sys.modules.get('multiprocessing.resource_tracker')
    stop = getattr(getattr(tracker, '_resource_tracker', None), '_stop', None)
    if stop is not None:
        try:
            stop()
        except (OSError, ChildProcessError):
            pass
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:  # children of the script may still hold the pipe
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)


def _script_name():
    return os.path.splitext(os.path.basename(sys.argv[0] or 'script'))[0]


def error_line(message, script=None):
    """`<script>: error: <message>`: a script's last line when it stops on an error. `script`:
    the name without `.py`, default the running one's (as in its Ctrl-C line)."""
    return f'{script or _script_name()}: error: {message}'


def exit_error(message, script=None):
    """Ends the script with status 1 and `error_line(message, script)` on stderr."""
    raise SystemExit(error_line(message, script))


def _interrupted_while_starting(signum, frame):
    try:
        sys.stderr.write(
            f'{_script_name()}: {signals.stopped_by(signum)} while starting; nothing was done.\n'
        )
        sys.stderr.flush()
    finally:
        if signum == signal.SIGTERM:
            signals.end_by_signal(signum)
        os._exit(130)


def is_interrupt(error):
    """True for a KeyboardInterrupt (Ctrl-C, or SIGTERM in `run_plain`'s main), and for the
    RuntimeError pybind11 raises in its place when the signal comes while TensorFlow builds the
    exception of a failing call ('... ORIGINAL DeadlineExceededError REPLACED BY
    KeyboardInterrupt'): every stop of a parameter server, which polls with a timeout."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, RuntimeError) and 'REPLACED BY KeyboardInterrupt' in str(error)
    )


def _main_is_project_script():
    """A top-level script of the project or a benchmark is running (not one of its
    multiprocessing workers, which import the script's module too, nor a test or a notebook)."""
    import multiprocessing

    path = getattr(sys.modules.get('__main__'), '__file__', None)
    return (
        bool(path)
        and os.path.dirname(os.path.abspath(path)) in _SCRIPT_FOLDERS
        and multiprocessing.parent_process() is None
        and multiprocessing.current_process().name == 'MainProcess'
    )


_filter_pid = None
_user_wants_tf_lines = os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2') not in ('2', '3')
quiet_tensorflow_start()
_is_script = _main_is_project_script()
_filter_setting = os.environ.get('SSD_STDERR_FILTER')
if (
    _filter_setting == '1' or (_filter_setting != '0' and _is_script and not _user_wants_tf_lines)
) and 'tensorflow' not in sys.modules:
    install_stderr_filter()
if _is_script:
    skip_keras_at_tensorflow_import()
# A project script being started: Ctrl-C or SIGTERM during the (slow) imports ends with one
# line. `run` hands them to Python's KeyboardInterrupt once the script's main starts.
if _is_script and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
if _is_script and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _interrupted_while_starting)


class _DropMessages(py_logging.Filter):
    """Drops log records whose message matches one of `patterns` (at its start)."""

    def __init__(self, patterns):
        super().__init__()
        self.pattern = re.compile('|'.join(f'(?:{p})' for p in patterns), re.S)

    def filter(self, record):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        return not self.pattern.match(message)


def drop_tensorflow_messages(*patterns):
    """Hides TensorFlow's Python log records whose message starts with one of the regular
    expressions `patterns` (e.g. the three lines its CheckpointSaverHook logs per save, when we
    log one of our own). TF logs through its own logger, TFLite's converter through absl's, so
    the filter is on both, and the project's own absl records must not start with a pattern."""
    drop = _DropMessages(patterns)
    for name in ('tensorflow', 'absl'):
        py_logging.getLogger(name).addFilter(drop)


def absl_only(verbosity=None):
    """One line per log record, in absl's format.

    TF's python logger has a stderr handler of its own and also propagates to the root logger,
    where absl's handler prints it again: without this, every TensorFlow line (checkpoint saves,
    restores, warnings) appears twice. absl's handler is installed here too, as `app.run` does:
    a program without it (argparse) would print the records bare, by Python's last resort.
    `verbosity`: an absl level to set (e.g. logging.INFO).
    """
    import tensorflow as tf  # Here, not above: importing this module must not load TF.

    logging.use_absl_handler()

    # tf.data's note on an option our input pipelines set on purpose; says nothing to a user.
    warnings.filterwarnings('ignore', message='The `deterministic` argument has no effect')
    if verbosity is not None:
        logging.set_verbosity(verbosity)
    logger = tf.get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def run(main, interrupted=None):
    """`absl.app.run(main)` for the scripts, with two differences users see:

    - `--help`, `--helpshort`, `--helpfull`, `--helpxml` exit with status 0 (absl: 1);
    - Ctrl-C (KeyboardInterrupt) ends with one line `<script>: interrupted; <what was kept and
      how to resume>`, status 130, instead of a traceback. `interrupted`: a callable returning
      that text (called after the interrupt, so it can look at what is on disk), or None.
    - SIGTERM (a scheduler, `kill`, a CI timeout) takes the same path, Ctrl-C's cleanup included
      (it killed the script at once: no line, temporary files, worker processes and folder locks
      left behind), with the line `<script>: terminated (SIGTERM); <what was kept ...>`; then
      the script ends by that signal, as the sender expects (`signals.end_by_signal`).
    """

    def absl_main():
        try:
            app.run(main, flags_parser=_parse_flags)
        except SystemExit as exit_:
            if exit_.code == 1 and _help_requested():
                raise SystemExit(0) from None
            raise

    run_plain(absl_main, interrupted)


def _parse_flags(argv):
    """absl's parsing, then `expand_home` on the flags' values. A flag absl refuses (an enum's
    unknown value, a bound, a validator, a required flag) ends the script with one
    `error_line`, as its other errors do (absl: `FATAL Flags parsing error: ...` and a second
    line), with the closest of an enum's values."""
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as error:
        sys.stderr.write(error_line(flag_error_text(error)) + '\n')
        raise SystemExit(1) from None
    expand_home(flags.FLAGS)
    return remaining


_ENUM_ERROR = re.compile(r'flag --(\w+)=(.*): value should be one of <(.*)>$')

_INPUT_SIZE = (
    "the input size is the model's (300x300 for ssd_300_*, 512x512 for ssd_512_vgg, or its "
    "model card's); the older port ignored this flag too: drop it"
)
# Flags of the systems users come from (the older TF port, the TF Object Detection API,
# torchvision) that a script here does not define, and what to do instead: their users' commands
# name them, and absl's "Unknown command line flag" alone leaves them guessing.
_OLDER_PORT = "the older TF port's flag"
_TF_OD_API = "the TF Object Detection API's flag"
_TF_OD_API_CONFIG = "a TF Object Detection API post-processing setting (pipeline.config)"
_TORCHVISION = "a torchvision SSD argument"
# The detection settings under their names there; absl's "Did you mean" named unrelated flags
# (--score_threshold: stderrthreshold).
_SCORE = 'here it is --select_threshold (the minimum class score)'
_NMS = 'here it is --nms_threshold (the NMS IoU threshold)'
_PER_IMAGE = 'here it is --keep_top_k (detections per image)'
_DETECTION_SETTINGS = {
    'score_threshold': (_TF_OD_API_CONFIG, _SCORE),
    'min_score_thresh': ('a TF Object Detection API visualisation argument', _SCORE),
    'box_score_thresh': (_TORCHVISION, _SCORE),
    'iou_threshold': (_TF_OD_API_CONFIG, _NMS),
    'box_nms_thresh': (_TORCHVISION, _NMS),
    'max_total_detections': (_TF_OD_API_CONFIG, _PER_IMAGE),
    'detections_per_img': (_TORCHVISION, _PER_IMAGE),
    'max_detections_per_class': (
        _TF_OD_API_CONFIG,
        'here --top_k is the candidates per class before NMS, --keep_top_k the detections per '
        'image',
    ),
}
_LABEL_MAP_PATH = (_TF_OD_API, 'here it is --labels_file (which reads label_map.pbtxt files)')
# {script: {flag of another system: (whose flag it is, what replaces it here)}}.
OTHER_SYSTEMS_FLAGS = {
    'train_ssd_network': {
        'train_image_size': (_OLDER_PORT, _INPUT_SIZE),
        'labels_offset': (
            _OLDER_PORT,
            'labels come from the records (1, 2, ...; 0 is background): drop it',
        ),
        'model_dir': (_TF_OD_API, 'here the training folder is --train_dir'),
        'pipeline_config_path': (
            _TF_OD_API,
            'here the model comes from flags (--model_name, ...) or a --model_card file, the '
            'training settings from flags',
        ),
    },
    'eval_ssd_network': {
        'eval_image_size': (_OLDER_PORT, _INPUT_SIZE),
        'master': (_OLDER_PORT, 'the evaluation runs in this process: drop it'),
        'num_preprocessing_threads': (
            _OLDER_PORT,
            'its threads are --num_threads (TF and tf.data threads)',
        ),
        'preprocessing_name': (
            _OLDER_PORT,
            "the evaluation preprocesses as the model's card says, --eval_resize picks the "
            'resize: drop it',
        ),
        'checkpoint_dir': (
            _TF_OD_API,
            "here --checkpoint_path=<the trainer's --train_dir> with --wait_for_checkpoints "
            'evaluates each checkpoint as it comes (without it: the latest one, once)',
        ),
        'label_map_path': _LABEL_MAP_PATH,
        **_DETECTION_SETTINGS,
        # In an evaluation an IoU threshold may also mean the matching one.
        'iou_threshold': (
            _TF_OD_API_CONFIG,
            f'{_NMS}; the IoU a detection needs to match a ground truth is --matching_threshold',
        ),
    },
    'export_ssd_network': {'label_map_path': _LABEL_MAP_PATH, **_DETECTION_SETTINGS},
    'detect_ssd_network': {'label_map_path': _LABEL_MAP_PATH, **_DETECTION_SETTINGS},
    'tf_convert_data': {'label_map_path': _LABEL_MAP_PATH},
}
# The older port's integer values of enum flags (its Resize IntEnum, 1-based).
OLDER_PORT_ENUM_NUMBERS = {
    'eval_resize': ('NONE', 'CENTRAL_CROP', 'PAD_AND_RESIZE', 'WARP_RESIZE'),
}


def _without_flag_values(text, flag_values):
    """`text` less absl's `flags a=1, b=None: ` that begins a multi-flag check's message, every
    flag of the check with its value (the messages name the flags that matter). The prefix is
    matched against the flags' values, so a value holding ': ' is no problem; other text is
    returned as it is."""
    rest = text.removeprefix('flags ')
    while rest != text:
        name, equals, after = rest.partition('=')
        value = str(flag_values[name].value) if equals and name in flag_values else None
        if value is None or not after.startswith(value):
            return text
        after = after[len(value) :]
        if after.startswith(': '):
            return after[2:]
        if not after.startswith(', '):
            return text
        rest = after[2:]
    return text


def flag_error_text(error, script=None):
    """absl's message of a refused flag on one line, with `(did you mean X?)` for an enum value
    close to one of its choices, what replaces another system's flag or an older-port value
    (`OTHER_SYSTEMS_FLAGS`, `OLDER_PORT_ENUM_NUMBERS`), and where to see the flags. `script`: the
    name without `.py`, default the running one's."""
    # absl puts each failed check on a line of its own.
    text = '; '.join(
        _without_flag_values(line.strip().rstrip('.'), flags.FLAGS)
        for line in str(error).splitlines()
        if line.strip()
    )
    enum = _ENUM_ERROR.match(text)
    if enum:
        name, value, choices = enum.group(1), enum.group(2), enum.group(3).split('|')
        numbered = OLDER_PORT_ENUM_NUMBERS.get(name, ())
        close = difflib.get_close_matches(value, choices, n=1)
        if re.fullmatch('[0-9]+', value) and 1 <= int(value) <= len(numbered):
            meant = numbered[int(value) - 1]
            text += (
                f" (the older port's {value} is --{name}={meant})"
                if meant in choices
                else f" (the older port's {value}, {meant}, is not offered here)"
            )
        elif close:
            text += f' (did you mean {close[0]}?)'
    advice = OTHER_SYSTEMS_FLAGS.get(script or _script_name(), {})
    if isinstance(error, flags.UnrecognizedFlagError) and error.flagname in advice:
        # absl's "Did you mean" would name a flag of other meaning (eval_image_size: eval_resize).
        whose, instead = advice[error.flagname]
        text = f'--{error.flagname} is {whose}; {instead}'
    return f'{text}; --helpfull lists the flags.'


def expand_home(flag_values):
    """Expands a leading `~` or `~user` in every string (or list of strings) flag value, as a
    shell would: `--checkpoint_path=~/train` reaches the script unexpanded (the shell expands
    `~` only at the start of a word), and some paths were expanded and others not (the
    checkpoint found, its model card not)."""
    for name in flag_values:
        flag = flag_values[name]
        value = flag.value
        if isinstance(value, str) and value.startswith('~'):
            flag.value = os.path.expanduser(value)
        elif isinstance(value, list) and any(
            isinstance(v, str) and v.startswith('~') for v in value
        ):
            flag.value = [os.path.expanduser(v) if isinstance(v, str) else v for v in value]


def run_plain(main, interrupted=None):
    """`main()` (a script without absl flags, e.g. argparse) with `run`'s Ctrl-C and SIGTERM
    lines."""
    restore_keras_setting()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signals.terminate)
    try:
        return main()
    except (KeyboardInterrupt, RuntimeError) as error:
        if not is_interrupt(error):
            raise
        # A second Ctrl-C or SIGTERM must not cut the line (`end_by_signal` restores SIGTERM's).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        what = ''
        if interrupted is not None:
            try:
                what = interrupted() or ''
            except Exception as err:  # the message must not become a traceback itself
                what = f'(could not tell what was kept: {err})'
        signum = signals.stop_signal()
        sys.stderr.write(
            f'{_script_name()}: {signals.stopped_by(signum)}{"; " + what if what else "."}\n'
        )
        sys.stderr.flush()
        if signum == signal.SIGTERM:
            signals.end_by_signal(signum)
        raise SystemExit(130) from None
    except BrokenPipeError:
        # Whoever read stdout has gone (`script --help | head`): nothing is left to tell it, and
        # the exit's flush must not fail again. Status as a SIGPIPE death (141); help's is 0.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0 if _help_requested() else 141) from None
    finally:
        # The work is done; what is left is the exit's cleanup (atexit: the stderr filter's
        # drain, at most 5 s), where a Ctrl-C or SIGTERM would only print a callback's traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


_HELP_ARG = re.compile(r'^--?(help|helpshort|helpfull|helpxml|\?)(=(true|t|1|yes|y))?$', re.I)


def _help_requested(argv=None):
    """True when the command line asks for help (absl exits with status 1 after printing it)."""
    for arg in (sys.argv if argv is None else argv)[1:]:
        if arg == '--':
            break
        if _HELP_ARG.match(arg):
            return True
    return False
