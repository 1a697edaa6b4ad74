"""What the CPU offers for bf16 and int8 arithmetic, read from /proc/cpuinfo (no TensorFlow).

Benchmarks state it beside every figure, and the main job picks its precision from it: bf16 is
4-10x fp32 on large matmuls where the CPU has AMX tiles (MobileNet-SSD300 inference in OpenVINO
on an AMX Xeon, 2 threads: about 1.8x on its convolutions, 1.7x end to end), 1.4-1.8x with
AVX-512 BF16 dot products alone (measured on a 2-core EPYC: SSD training and inference), and
emulated, slower than fp32, elsewhere."""

# Flags worth naming in a report, most capable first.
REPORTED_FLAGS = (
    'amx_bf16',
    'amx_int8',
    'amx_tile',
    'avx512_bf16',
    'avx512_vnni',
    'avx512f',
    'avx_vnni',
    'avx2',
)
# bf16 matrix units (AMX); avx512_bf16 is a vector dot-product instruction.
AMX_BF16_FLAG = 'amx_bf16'
# bf16 instructions of any kind (matrix tiles or vector dot products).
BF16_FLAGS = ('avx512_bf16', AMX_BF16_FLAG)
# int8 units, most capable first, and their names in a report.
INT8_UNITS = (('amx_int8', 'AMX-INT8'), ('avx512_vnni', 'AVX-512 VNNI'), ('avx_vnni', 'AVX-VNNI'))


def cpu_flags(path='/proc/cpuinfo'):
    """The feature flags of the first CPU in `path` (an empty set where there is none)."""
    try:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def has_amx(flags=None):
    """True where the CPU has AMX bf16 matrix units."""
    return AMX_BF16_FLAG in (cpu_flags() if flags is None else flags)


def has_bf16(flags=None):
    """True where the CPU has bf16 instructions (AMX or AVX-512 BF16); elsewhere bf16 is
    emulated in fp32 units (correct, slower than fp32)."""
    return bool(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def matrix_units(flags=None):
    """One line naming the CPU's bf16 and int8 matrix / vector units, e.g. 'AMX (bf16 matrix
    units); int8: AMX-INT8'. int8 IRs (`--formats openvino_int8`) gain most where the CPU has
    int8 dot products (VNNI) or tiles (AMX-INT8); elsewhere int8 is widened to 16 bits."""
    flags = cpu_flags() if flags is None else flags
    if AMX_BF16_FLAG in flags:
        bf16 = 'AMX (bf16 matrix units)'
    elif 'avx512_bf16' in flags:
        bf16 = 'AVX-512 BF16 (no AMX)'
    elif 'avx512f' in flags:
        bf16 = 'AVX-512, no bf16 instructions'
    elif 'avx2' in flags:
        bf16 = 'AVX2 only: no AVX-512, no bf16 instructions, no AMX'
    else:
        bf16 = 'no AVX2'
    int8 = next((name for flag, name in INT8_UNITS if flag in flags), 'no VNNI')
    return f'{bf16}; int8: {int8}'


def reported_flags(flags=None):
    """The REPORTED_FLAGS the CPU has, in that order."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in REPORTED_FLAGS if f in flags]


def busy_note(load_at_start, load_at_end, cpus):
    """A warning line for a timing's report when the machine was busy, else None: its 1-minute
    load average above 1.5x the `cpus` cores when the timing started (what ran before it, a
    previous benchmark's threads included, fades by a third a minute), or above 2x at its end
    (the benchmark's own threads, as many as the cores, count there). A benchmark run beside
    other work printed a MobileNet-SSD IR at 41 ms (load 7 on 2 cores) that takes 12 ms on the
    quiet machine, and nothing said so."""
    if load_at_start <= 1.5 * cpus and load_at_end <= 2 * cpus:
        return None
    return (
        f'warning: the machine was busy (1-minute load average {load_at_start:.2f} at the start, '
        f'{load_at_end:.2f} at the end, on {cpus} cores): these timings are slower than on a '
        f'quiet machine; run again when it is idle'
    )
