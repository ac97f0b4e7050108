"""label_distribution_analysis.py and ser.distribution: statistics table and
distribution plots over every segment of every video of the partition."""
import csv
import logging
import os
import shutil

import matplotlib.image
import numpy as np
import pytest

from ser import distribution as analysis
from ser import defaults
from ser import paths
from label_fixtures import run_script, write, write_labels, write_partition

PARTITION = {'1': 'train', '2': 'train', '3': 'devel', '4': 'test', '5': 'test'}
PLOTS = ['arousal_counts.png', 'arousal_density.png', 'label_statistics.csv',
         'valence_counts.png', 'valence_density.png']


@pytest.fixture
def labelled(tmp_path):
    """(work_dir, {set: frames [n, 2]}): labels of PARTITION, each set with
    its own distribution, and the partition file."""
    work_dir = str(tmp_path / 'work')
    rng = np.random.default_rng(3)
    frames = {'train': [], 'devel': [], 'test': []}
    for number, (recording_id, portion) in enumerate(PARTITION.items()):
        centre = {'train': (0.2, -0.1), 'devel': (-0.3, 0.4), 'test': (0.0, 0.1)}[portion]
        values = np.clip(rng.normal(centre, 0.25, (40 + 7 * number, 2)), -1, 1)
        write_labels(work_dir, recording_id, values)
        frames[portion].append(values)
    write_partition(paths.partition_path(work_dir), PARTITION)
    return work_dir, {portion: np.concatenate(v) for portion, v in frames.items()}


def expected_rows(frames):
    return [(dimension, portion, len(values), np.mean(values[:, d]), np.std(values[:, d]),
             np.min(values[:, d]), np.max(values[:, d]))
            for d, dimension in enumerate(paths.DIMENSIONS)
            for portion, values in frames.items()]


def test_command_line_prints_and_writes_the_statistics_and_four_plots(labelled):
    work_dir, frames = labelled
    result = run_script('label_distribution_analysis.py', '--work_dir', work_dir,
                        '--bins', '20')
    assert result.returncode == 0, result.stderr
    plot_dir = paths.plots_dir(work_dir)
    assert sorted(os.listdir(plot_dir)) == PLOTS  # and no temporary file left behind

    printed = [line.split() for line in result.stdout.strip().splitlines()]
    assert printed[0] == list(analysis.STATISTICS_HEADER)
    with open(os.path.join(plot_dir, 'label_statistics.csv'), encoding='utf-8') as handle:
        written = list(csv.reader(handle))
    assert written[0] == list(analysis.STATISTICS_HEADER)
    expected = expected_rows(frames)
    assert len(printed) == len(written) == len(expected) + 1
    for shown, stored, wanted in zip(printed[1:], written[1:], expected):
        assert shown[:3] == stored[:3] == [wanted[0], wanted[1], str(wanted[2])]
        np.testing.assert_allclose([float(x) for x in shown[3:]], wanted[3:], atol=5e-5)
        np.testing.assert_allclose([float(x) for x in stored[3:]], wanted[3:], rtol=1e-12)

    for name in PLOTS[:2] + PLOTS[3:]:
        path = os.path.join(plot_dir, name)
        with open(path, 'rb') as handle:
            assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something is drawn


@pytest.mark.parametrize('density', [True, False])
def test_curves_share_bins_and_are_densities_or_counts(labelled, density):
    _, frames = labelled
    for d in range(len(paths.DIMENSIONS)):
        edges, curves = analysis.distribution_curves(frames, d, 12, density)
        everything = np.concatenate([values[:, d] for values in frames.values()])
        np.testing.assert_allclose(edges, np.linspace(everything.min(), everything.max(), 13))
        assert list(curves) == list(defaults.PORTIONS)
        for portion, curve in curves.items():
            np.testing.assert_allclose(
                curve, np.histogram(frames[portion][:, d], bins=edges, density=density)[0])
            if density:
                assert np.sum(curve * np.diff(edges)) == pytest.approx(1)
            else:
                assert curve.sum() == len(frames[portion])


def test_videos_without_labels_are_errors_naming_every_folder(labelled):
    work_dir, _ = labelled
    missing = [os.path.join(paths.labels_dir(work_dir), i) for i in ('3', '5')]
    for path in missing:
        shutil.rmtree(path)
    result = run_script('label_distribution_analysis.py', '--work_dir', work_dir)
    assert result.returncode == 1
    for path in missing:
        assert '%s: no segment label files' % path in result.stderr
    assert not os.path.exists(paths.plots_dir(work_dir))


def test_bad_labels_row_is_an_error_naming_file_and_row(labelled):
    work_dir, _ = labelled
    path = paths.label_path(work_dir, '4_2')
    with open(path, encoding='utf-8') as handle:
        lines = handle.read().splitlines(keepends=True)
    lines[2] = '250,nan,0.1\n'
    write(path, ''.join(lines))
    values, errors = analysis.read_set_values(work_dir, PARTITION)
    assert [str(error) for error in errors] == [
        "%s, row 3: column 'arousal': 'nan' is not a finite number" % path]


def test_empty_set_is_left_out_with_a_warning_and_no_frames_at_all_is_an_error(labelled,
                                                                              caplog):
    work_dir, frames = labelled
    without_test = {i: p for i, p in PARTITION.items() if p != 'test'}
    with caplog.at_level(logging.WARNING):
        values, errors = analysis.read_set_values(work_dir, without_test)
    assert 'set test has no labelled frames' in caplog.text
    assert errors == []
    assert list(values) == ['train', 'devel']
    np.testing.assert_array_equal(values['devel'], frames['devel'])
    assert [row[1] for row in analysis.statistics_rows(values)] == ['train', 'devel'] * 2
    values, errors = analysis.read_set_values(work_dir, {})
    assert values == {}
    assert 'no label rows for any video' in str(errors[0])
