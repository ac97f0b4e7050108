"""synchronisation_map_generator.py, run as a user runs it, on demo corpora in
MuSe-CaR 2020's layout: --aligner given reproduces MuSe's word times in
segment-relative seconds, --aligner phonetic and --aligner aeneas re-align
words whose given times are wrong, every segment with audio gets a sync map,
bad input is reported by file and row while the other segments are done,
reruns resume."""
import os
import re
import shutil

import numpy as np
import pytest
import soundfile

import helper
from ser import alignment, muse, sync_maps
from ser import paths
from ser.text import normalise_words
from tools import demo_corpus
from label_fixtures import run_script, write

SCRIPT = 'synchronisation_map_generator.py'
SYNC_COLUMNS = [('id', str), ('start', float), ('end', float), ('word', str)]
SEGMENT_COLUMNS = [('Id', str), ('segment', str), ('start_ms', int), ('end_ms', int),
                   ('transcript', int)]


def run(muse_dir, work_dir, *extra):
    return run_script(SCRIPT, '--muse_dir', muse_dir, '--work_dir', work_dir, '--workers', '2',
                      *extra)


def read_sync_map(work_dir, name):
    return helper.read_table(paths.sync_map_path(work_dir, name), SYNC_COLUMNS)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """{muse, truth, layout, segments (truth's segments.csv rows)}: 4 videos x 20 s."""
    root = tmp_path_factory.mktemp('sync_corpus')
    muse_dir, truth_dir = str(root / 'MuSe-CaR'), str(root / 'truth')
    demo_corpus.generate_corpus(muse_dir, truth_dir, 4, 20.0, seed=1)
    return {'muse': muse_dir, 'truth': truth_dir, 'layout': paths.MuseLayout(muse_dir),
            'segments': helper.read_table(os.path.join(truth_dir, 'segments.csv'),
                                          SEGMENT_COLUMNS)}


@pytest.fixture(scope='module')
def given(corpus, tmp_path_factory):
    """The whole corpus through --aligner given with the truth: (work_dir, process)."""
    work_dir = str(tmp_path_factory.mktemp('sync_work'))
    return work_dir, run(corpus['muse'], work_dir, '--truth_dir', corpus['truth'])


def copy_corpus(corpus, tmp_path):
    copy = str(tmp_path / 'MuSe-CaR')
    shutil.copytree(corpus['muse'], copy)
    return copy, paths.MuseLayout(copy)


def shift_transcripts(layout, names, milliseconds):
    """Rewrite the transcripts of `names` with every time moved by `milliseconds`."""
    for name in names:
        path = layout.transcript_path(name)
        words = muse.read_transcript(path)
        write(path, 'start,end,segment_id,word\n' + ''.join(
            '%d,%d,%d,"%s"\n' % (w.start + milliseconds, w.end + milliseconds, w.segment, w.token)
            for w in words))


# --------------------------------------------------------------------------
# --aligner given
# --------------------------------------------------------------------------
def test_given_sync_maps_equal_the_given_word_times_to_1ms(corpus, given):
    work_dir, process = given
    assert process.returncode == 0, process.stderr
    layout, checked = corpus['layout'], 0
    for _, name, start_ms, _, has_transcript in corpus['segments']:
        with open(paths.sync_map_path(work_dir, name), encoding='utf-8') as handle:
            assert handle.readline() == 'id,start,end,word\n'
        rows = read_sync_map(work_dir, name)
        if not has_transcript:
            assert rows == []
            continue
        expected = [((w.start - start_ms) / 1000, (w.end - start_ms) / 1000, word)
                    for w in muse.read_transcript(layout.transcript_path(name))
                    for word in normalise_words(w.token)]
        assert [row[0] for row in rows] == ['w%d' % i for i in range(len(rows))]
        assert [row[3] for row in rows] == [word for _, _, word in expected]
        np.testing.assert_allclose([row[1:3] for row in rows],
                                   [times[:2] for times in expected], atol=0.0005)
        assert not any('<' in row[3] or 'filler' in row[3] for row in rows)
        checked += 1
    assert checked >= 6


def test_summary_counts_segments_readings_and_accuracy(corpus, given):
    log = given[1].stderr
    total = len(corpus['segments'])
    assert '%d segment(s) done, 0 skipped' % total in log and ', 0 failed;' in log
    assert 'as video ms in %d segment(s), as segment-relative in 0' % (total - 1) in log
    assert '1 segment(s) without a transcript' in log
    assert '0 whose audio and label span differ' in log
    assert 's of audio per wall second' in log
    match = re.search(r'accuracy vs truth \((\d+) segment\(s\), \d+ words\): mean \|start error\| '
                      r'([\d.]+) s, midpoints inside the true word ([\d.]+)%', log)
    # MuSe's times are off by the demo's jitter, no more.
    assert int(match.group(1)) == total - 1
    assert float(match.group(2)) <= demo_corpus.TIMING_JITTER_MS / 1000
    assert float(match.group(3)) >= 95


def test_segment_relative_times_and_duration_mismatch_are_found_and_counted(corpus, tmp_path):
    muse_dir, layout = copy_corpus(corpus, tmp_path)
    later = [row for row in corpus['segments'] if row[2] > 0 and row[4]][0]
    shift_transcripts(layout, [later[1]], -later[2])
    # Two seconds more audio than labels: the start assumption is in doubt there.
    audio = layout.audio_path(later[1])
    samples, rate = soundfile.read(audio, dtype='int16')
    soundfile.write(audio, np.concatenate([samples, np.zeros((2 * rate,) + samples.shape[1:],
                                                             dtype='int16')]), rate)
    work_dir = str(tmp_path / 'work')
    process = run(muse_dir, work_dir, '--ids', paths.video_of(later[1]))
    assert process.returncode == 0, process.stderr
    assert 'as segment-relative in 1' in process.stderr
    assert '1 whose audio and label span differ by > 1 s' in process.stderr
    assert '%s: audio lasts' % audio in process.stderr
    expected = [((w.start - later[2]) / 1000, word)
                for w in muse.read_transcript(corpus['layout'].transcript_path(later[1]))
                for word in normalise_words(w.token)]
    rows = read_sync_map(work_dir, later[1])
    np.testing.assert_allclose([row[1] for row in rows], [t for t, _ in expected], atol=0.0005)


# --------------------------------------------------------------------------
# --aligner phonetic and aeneas: given times all 400 ms late
# --------------------------------------------------------------------------
def test_realignment_recovers_words_whose_given_times_are_400ms_late(corpus, tmp_path):
    muse_dir, layout = copy_corpus(corpus, tmp_path)
    # Labelled videos only: an unlabelled segment would be placed by its words,
    # which takes up most of a shift common to all of them.
    partition = paths.read_partition(layout.partition_path)
    with_text = [row[1] for row in corpus['segments'] if row[4]]
    named = [name for name in with_text if partition[paths.video_of(name)] != 'test']
    shift_transcripts(layout, named, 400)
    results = {}
    for aligner in ('given', 'phonetic', 'aeneas'):
        work_dir = str(tmp_path / aligner)
        process = run(muse_dir, work_dir, '--aligner', aligner, '--truth_dir', corpus['truth'])
        assert process.returncode == 0, process.stderr
        accuracies = [alignment.alignment_accuracy(
            read_sync_map(work_dir, name),
            helper.read_table(sync_maps.truth_path(corpus['truth'], name),
                              sync_maps.TRUTH_COLUMNS)) for name in named]
        results[aligner] = alignment.pooled_accuracy(accuracies)
        assert 'accuracy vs truth (%d segment(s)' % len(with_text) in process.stderr
        if aligner != 'given':
            assert ('words aligned by the %s aligner in %d segment(s)' % (aligner, len(with_text))
                    if aligner == 'phonetic' else 'by aeneas in %d,' % len(with_text)) \
                in process.stderr
    for aligner in ('phonetic', 'aeneas'):
        assert results[aligner]['midpoint_inside_fraction'] >= 0.96
        assert results[aligner]['first_start_error'] <= 0.05
        # The late times themselves are far off: the re-alignment is what fixes them.
        assert results['given']['midpoint_inside_fraction'] < \
            results[aligner]['midpoint_inside_fraction']
    assert results['given']['first_start_error'] >= 0.35


def test_the_phonetic_aligner_refuses_a_language_it_does_not_speak(corpus, tmp_path):
    process = run(corpus['muse'], str(tmp_path), '--aligner', 'phonetic', '--language', 'deu')
    assert process.returncode != 0
    assert '--aligner phonetic aligns English only' in process.stderr
    assert not os.path.exists(paths.sync_maps_dir(str(tmp_path)))


# --------------------------------------------------------------------------
# Bad input: file and row named, the other segments done, reruns resume
# --------------------------------------------------------------------------
def test_bad_segments_are_reported_the_others_done_and_a_rerun_resumes(corpus, tmp_path):
    muse_dir, layout = copy_corpus(corpus, tmp_path)
    originals = str(tmp_path / 'originals')
    shutil.copytree(muse_dir, originals)
    with_text = [row[1] for row in corpus['segments'] if row[4]]
    header = 'start,end,segment_id,word\n'
    bad = dict(zip(['columns', 'number', 'backwards', 'latin1', 'missing', 'truncated'],
                   with_text))
    segment = {key: paths.split_segment_name(name)[1] for key, name in bad.items()}
    write(layout.transcript_path(bad['columns']), header + '100,300,%d\n' % segment['columns'])
    write(layout.transcript_path(bad['number']),
          header + '100,300,%d,The\n400,later,%d,car\n' % (segment['number'], segment['number']))
    write(layout.transcript_path(bad['backwards']),
          header + '900,300,%d,The\n' % segment['backwards'])
    write(layout.transcript_path(bad['latin1']),
          header.encode() + b'100,300,%d,caf\xe9\n' % segment['latin1'])
    os.remove(layout.audio_path(bad['missing']))
    truncated = layout.audio_path(bad['truncated'])
    with open(truncated, 'rb') as handle:
        data = handle.read()
    write(truncated, data[:len(data) // 2])

    work_dir = str(tmp_path / 'work')
    process = run(muse_dir, work_dir)
    assert process.returncode == 1
    log = process.stderr
    expected = {'columns': (layout.transcript_path(bad['columns']) + ', row 2',
                            'expected 4 columns'),
                'number': (layout.transcript_path(bad['number']) + ', row 3',
                           "'later' is not a valid float"),
                'backwards': (layout.transcript_path(bad['backwards']) + ', row 2',
                              'end must not come before start'),
                'latin1': (layout.transcript_path(bad['latin1']) + ', row 2', 'not valid UTF-8'),
                'missing': (layout.transcript_path(bad['missing']), 'has no audio file'),
                'truncated': (truncated, 'truncated WAV')}
    for where, problem in expected.values():
        assert re.search(re.escape(where) + r'.*' + re.escape(problem), log), (where, problem)
    total = len(corpus['segments'])
    assert '%d segment(s) done, 0 skipped' % (total - 6) in log and ', 6 failed;' in log
    for key, name in bad.items():
        assert not os.path.exists(paths.sync_map_path(work_dir, name)), key
    leftovers = [n for _, _, names in os.walk(work_dir) for n in names if n.endswith('.tmp')]
    assert leftovers == []

    # The inputs repaired, a rerun does only what failed.
    shutil.rmtree(muse_dir)
    shutil.copytree(originals, muse_dir)
    again = run(muse_dir, work_dir)
    assert again.returncode == 0, again.stderr
    assert '6 segment(s) done, %d skipped' % (total - 6) in again.stderr


def test_ids_overwrite_and_foreign_flags(corpus, tmp_path):
    work_dir = str(tmp_path / 'work')
    names = corpus['layout'].audio_segments('2')
    assert run(corpus['muse'], work_dir, '--ids', '2').returncode == 0
    assert sorted(os.listdir(paths.sync_maps_dir(work_dir))) == ['2']
    assert paths.work_segments(paths.sync_maps_dir(work_dir), '2') == names
    stale = paths.sync_map_path(work_dir, names[0])
    write(stale, 'id,start,end,word\nw0,0,1,stale\n')
    kept = run(corpus['muse'], work_dir, '--ids', '2')
    assert '0 segment(s) done, %d skipped' % len(names) in kept.stderr
    assert read_sync_map(work_dir, names[0]) == [('w0', 0.0, 1.0, 'stale')]
    redone = run(corpus['muse'], work_dir, '--ids', '2', '--overwrite')
    assert '%d segment(s) done, 0 skipped' % len(names) in redone.stderr
    assert read_sync_map(work_dir, names[0]) != [('w0', 0.0, 1.0, 'stale')]
    unknown = run(corpus['muse'], work_dir, '--ids', '2,nope')
    assert unknown.returncode == 1 and '--ids not in the partition: nope' in unknown.stderr
    for foreign in (['--seed', '1'], ['--language', 'klingon'], ['--aligner', 'whisper']):
        refused = run(corpus['muse'], work_dir, *foreign)
        assert refused.returncode != 0 and foreign[0][2:] in refused.stderr


def test_interrupted_write_leaves_no_file(corpus, tmp_path, monkeypatch):
    name = corpus['layout'].audio_segments('1')[0]
    output = paths.sync_map_path(str(tmp_path / 'work'), name)
    real_writer = helper.csv.writer

    class DyingWriter:
        """Writes the header, then dies half way through the rows, as Ctrl-C would."""

        def __init__(self, handle, **kwargs):
            self.writer = real_writer(handle, **kwargs)
            self.writerow = self.writer.writerow

        def writerows(self, rows):
            rows = list(rows)
            self.writer.writerows(rows[:len(rows) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(helper.csv, 'writer', DyingWriter)
    job = sync_maps.Job(name, corpus['layout'].audio_path(name),
                        corpus['layout'].transcript_path(name), output, 0, sync_maps.LABELS, None,
                        'given',
                        'eng', None)
    with pytest.raises(KeyboardInterrupt):
        sync_maps.make_sync_map(job)
    assert os.listdir(os.path.dirname(output)) == []


def test_given_tokens_are_normalised_fillers_dropped_and_compounds_shared():
    words = [(2, 0.5, 1.0, 'Well,'), (3, 1.0, 1.4, '<filler>'), (4, 1.4, 2.0, 'e-mail'),
             (5, 2.0, 2.5, '?!')]
    rows = sync_maps.given_rows(words)
    assert [word for _, _, word in rows] == ['well', 'e', 'mail']
    # 'e' and 'mail' share the token's span by their lengths (1 : 4).
    np.testing.assert_allclose([row[:2] for row in rows],
                               [(0.5, 1.0), (1.4, 1.52), (1.52, 2.0)])
