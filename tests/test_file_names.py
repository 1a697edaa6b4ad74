"""Class names of any kind: the one safe-file-name rule, and the VOC results files and PR plots
that use it (real names in tables, safe stems in file names, writer and reader agree)."""

import hashlib
import os

import matplotlib.figure
import numpy as np
import pytest

from evaluation import outputs
from tf_extended import file_names
from tf_extended import voc_metrics as vm

NAMES = {
    1: 'traffic light',
    2: 'a/b',
    3: 'a_b',
    4: 'A_B',
    5: 'café',
    6: '..',
    7: 'x\ny',
    8: 'C:\\tmp\\*?',
    9: 'person',
    10: 'cost $5',
    11: 'long' * 60,
}


def test_the_rule():
    stems = file_names.safe_file_names(NAMES.values())
    assert stems['traffic light'] == 'traffic_light' and stems['person'] == 'person'
    # Collisions get _2, _3 in list order, case-insensitively (macOS, Windows).
    assert (stems['a/b'], stems['a_b'], stems['A_B']) == ('a_b', 'a_b_2', 'A_B_3')
    assert stems['café'] == 'café' and stems['..'] == '_.' and stems['x\ny'] == 'x_y'
    assert stems['C:\\tmp\\*?'] == 'C__tmp___'
    assert len(stems['long' * 60].encode()) == 100 and stems['long' * 60].startswith('longlong')
    assert len({s.casefold() for s in stems.values()}) == len(NAMES)
    for stem in stems.values():
        assert os.path.basename(stem) == stem and not stem.startswith('.')
    with pytest.raises(ValueError, match='twice'):
        file_names.safe_file_names(['a', 'a'])
    with pytest.raises(ValueError, match='non-empty'):
        file_names.safe_file_names([''])


def test_the_rule_normalises_and_cuts_by_utf8_bytes():
    """A decomposed 'e' + U+0301 is NFC 'é' (not 'cafe_', which would not collide with 'café');
    a long name is cut by UTF-8 bytes, not characters (60 'é' are 120 bytes in 60 characters), to
    91 bytes (a character is not split) plus '~' and 8 hex digits of the name's SHA-1 (not the
    stem's, which names differing only in replaced characters share)."""
    stems = file_names.safe_file_names(['cafe\u0301', 'café'])
    assert stems == {'cafe\u0301': 'café', 'café': 'café_2'}
    accents, slash, colon = 'é' * 60, 'long' * 30 + '/x', 'long' * 30 + ':x'
    stems = file_names.safe_file_names([accents, slash, colon])
    sha1 = {n: hashlib.sha1(n.encode('utf-8')).hexdigest()[:8] for n in (accents, slash, colon)}
    assert stems[accents] == 'é' * 45 + '~' + sha1[accents]  # 90 + 9 bytes
    assert stems[slash] == ('long' * 30)[:91] + '~' + sha1[slash]
    assert stems[colon] == ('long' * 30)[:91] + '~' + sha1[colon]


def test_results_files_and_plots_take_any_name(tmp_path):
    with vm.VOCResultsWriter(str(tmp_path), 'val', NAMES) as writer:
        writer.add_image(
            'img1',
            [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.9]],
            [0.9, 0.4],
            [2, 3],
            image_shape=(100, 100),
        )
    stems = file_names.safe_file_names(NAMES.values())
    assert sorted(os.listdir(tmp_path)) == sorted(
        f'comp4_det_val_{stems[n]}.txt' for n in NAMES.values()
    )
    read = vm.read_voc_results(str(tmp_path), 'val', NAMES)
    assert read[2].image_ids == ['img1'] and read[3].scores.tolist() == [0.4]
    evaluator = vm.VOCEvaluator(NAMES)
    evaluator.add_image(
        'img1',
        [[0.1, 0.1, 0.5, 0.5]],
        [2],
        [0],
        [[0.1, 0.1, 0.5, 0.5]],
        [0.9],
        [2],
        image_shape=(100, 100),
    )
    result = evaluator.compute()
    assert result.ap('voc07')['a/b'] == pytest.approx(1.0)
    table = result.format_table({label: 100 + label for label in NAMES})
    row = next(line for line in table.splitlines() if ' a/b ' in line)
    assert row.split()[:2] == ['102', 'a/b']
    evaluator = vm.VOCEvaluator(NAMES)
    evaluator.add_image(
        'img1',
        np.array([[0.1, 0.1, 0.5, 0.5]] * 3),
        [2, 10, 1],
        [0, 0, 0],
        [[0.1, 0.1, 0.5, 0.5]] * 3,
        [0.9, 0.8, 0.7],
        [2, 10, 1],
        image_shape=(50, 50),
    )
    paths = outputs.plot_pr_curves(evaluator.compute(), str(tmp_path / 'pr'))
    assert sorted(os.path.basename(p) for p in paths) == [
        'pr_a_b.png',
        'pr_cost__5.png',
        'pr_traffic_light.png',
    ]


def test_each_pr_curve_shows_its_own_class(tmp_path, monkeypatch):
    """The plots share one figure: each PNG holds its class's curve only (an empty one none),
    its envelope and APs."""
    import cv2

    evaluator = vm.VOCEvaluator({1: 'early', 2: 'missed', 3: 'late'})
    hit, miss = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]
    for i in range(4):
        # 'early': its first detections are right (precision 1 up to recall 0.5, then falls);
        # 'late': its first are wrong. 'missed' has ground truth and no detection.
        evaluator.add_image(
            f'img{i}',
            np.array([hit, hit, hit]),
            [1, 2, 3],
            [0, 0, 0],
            [hit if i < 2 else miss, miss if i < 2 else hit],
            [0.9 - 0.1 * i, 0.5 - 0.1 * i],
            [1, 3],
            image_shape=(50, 50),
        )
    saved = {}
    savefig = matplotlib.figure.Figure.savefig

    def record(fig, path, **kwargs):
        # Title and each line's precisions (curve, then the VOC12 envelope) of every plot.
        ax = fig.axes[0]
        lines = [line.get_ydata().tolist() for line in ax.lines]
        saved[os.path.basename(path)] = (ax.get_title(), lines)
        savefig(fig, path, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', record)
    paths = outputs.plot_pr_curves(evaluator.compute(), str(tmp_path))
    # 'early': precisions 1, 1, 2/3, 1/2 at recalls 1/4, 1/2, 1/2, 1/2; 'late': 0, 0, 1/3, 1/2
    # at 0, 0, 1/4, 1/2. The envelope is the devkit's: the largest precision at any recall
    # beyond; AP07 its mean at recalls 0, 0.1, ..., 1 (6 of 11 points reached), AP12 its area.
    assert saved['pr_early.png'] == (
        'early: AP07 54.5, AP12 50.0',
        [pytest.approx([1, 1, 2 / 3, 1 / 2])] * 2,
    )
    assert saved['pr_late.png'] == (
        'late: AP07 27.3, AP12 25.0',
        [pytest.approx([0, 0, 1 / 3, 1 / 2]), pytest.approx([1 / 2] * 4)],
    )
    drawn = {}  # coloured pixels: the lines and their legend (axes, text and grid are grey)
    for path in paths:
        image = cv2.imread(path).astype(int)
        drawn[os.path.basename(path)] = image.max(axis=-1) - image.min(axis=-1) > 60
    assert drawn['pr_early.png'].sum() > 100 and drawn['pr_late.png'].sum() > 100
    assert drawn['pr_missed.png'].sum() == 0
    assert (drawn['pr_early.png'] != drawn['pr_late.png']).sum() > 200
