"""The demo corpus: MuSe-CaR 2020's distributed layout, segment audio cut at the
label timestamps, word transcripts in video ms off by a recogniser's jitter,
truth per segment, labels learnable the way the paper fuses them (arousal from
the sound, valence from the words), determinism, Mac litter, safe reruns."""

import filecmp
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import helper
from ser import audio
from ser import defaults
from ser import paths
from ser.text import normalise_words
from tools import demo_corpus as demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = 15.0
LABEL_COLUMNS = [('timestamp', int), ('value', float), ('segment_id', int)]
TRANSCRIPT_COLUMNS = [('start', int), ('end', int), ('segment_id', int), ('word', str)]
WORD_COLUMNS = [('start', float), ('end', float), ('word', str)]
SEGMENT_COLUMNS = [('Id', str), ('segment', str), ('start_ms', int), ('end_ms', int),
                   ('transcript', int)]


def _build(root, videos=4, seconds=SECONDS, seed=0, workers=1):
    muse, truth = os.path.join(root, 'MuSe-CaR'), os.path.join(root, 'truth')
    summary = demo.generate_corpus(muse, truth, videos, seconds, seed, workers=workers)
    layout = paths.MuseLayout(muse)
    return {'muse': muse, 'truth': truth, 'summary': summary, 'seconds': seconds,
            'layout': layout, 'partition': paths.read_partition(layout.partition_path),
            'segments': helper.read_table(os.path.join(truth, 'segments.csv'), SEGMENT_COLUMNS)}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    return _build(str(tmp_path_factory.mktemp('seed0')))


@pytest.fixture(scope='module')
def stats_corpus(tmp_path_factory):
    """Enough sentences (~70) for correlations to mean something; 60-s videos
    as in `make demo`, so 2 to 4 segments each."""
    return _build(str(tmp_path_factory.mktemp('stats')), videos=8, seconds=60.0, seed=3, workers=2)


def _labels(corpus, dimension, video_id):
    path = corpus['layout'].label_path(dimension, video_id)
    if not os.path.exists(path):
        path = os.path.join(corpus['truth'], 'withheld_labels', dimension, video_id + '.csv')
    return np.array(helper.read_table(path, LABEL_COLUMNS), dtype=float)


def _segments(corpus, video_id):
    return [row for row in corpus['segments'] if row[0] == video_id]


def _truth_words(corpus, name):
    return helper.read_table(os.path.join(corpus['truth'], 'word_timings', paths.video_of(name),
                                          name + '.csv'), WORD_COLUMNS)


def _video_words(corpus, video_id):
    """True words of a whole video in video seconds."""
    return [(start + first / 1000.0, end + first / 1000.0, word)
            for _, name, first, _, _ in _segments(corpus, video_id)
            for start, end, word in _truth_words(corpus, name)]


def _video_audio(corpus, video_id, rate=16000):
    """The video's audio put back together: neighbours share one 250-ms frame."""
    overlap = paths.LABEL_STEP_MS * rate // 1000
    parts = [audio.read_file(corpus['layout'].audio_path(name), rate)
             for _, name, _, _, _ in _segments(corpus, video_id)]
    return np.concatenate([parts[0]] + [part[overlap:] for part in parts[1:]])


def _all_files(root):
    found = []
    for directory, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, n), root) for n in names]
    return sorted(found)


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------
def test_layout_is_muse_2020_and_test_labels_are_withheld(corpus):
    muse, layout, partition = corpus['muse'], corpus['layout'], corpus['partition']
    ids = list(partition)
    assert ids == ['1', '2', '3', '4']
    assert sorted(partition.values()) == ['devel', 'test', 'train', 'train']
    assert helper.list_dir(muse) == ['c1_muse_wild', 'metadata']
    assert helper.list_dir(layout.task_path) == ['audio_segments', 'label_segments',
                                                 'transcription_segments']
    assert helper.list_dir(os.path.join(muse, 'metadata')) == ['partition.csv']
    labelled = sorted(i for i, p in partition.items() if p != 'test')
    for dimension in paths.DIMENSIONS:
        assert helper.list_ids(layout.label_dir(dimension), '.csv') == labelled
    names = [row[1] for row in corpus['segments']]
    assert names == [name for i in ids for name in layout.audio_segments(i)]
    for video_id in ids:
        count = len(layout.audio_segments(video_id))
        assert 1 <= count <= demo.SEGMENTS_PER_VIDEO[1]
    summary = corpus['summary']
    assert (summary['videos'], summary['segments'], summary['seconds']) == (4, len(names),
                                                                             4 * SECONDS)
    assert summary['words'] == sum(len(_truth_words(corpus, name)) for name in names)


@pytest.mark.slow
def test_videos_of_a_minute_have_two_to_four_segments(stats_corpus):
    counts = [len(stats_corpus['layout'].audio_segments(i)) for i in stats_corpus['partition']]
    assert set(counts) <= {2, 3, 4} and len(set(counts)) >= 2


def test_exactly_one_segment_has_no_transcript(corpus):
    layout = corpus['layout']
    missing = [name for _, name, _, _, _ in corpus['segments']
               if not os.path.isfile(layout.transcript_path(name))]
    first_train = min((i for i, p in corpus['partition'].items() if p == 'train'), key=int)
    assert missing == corpus['summary']['no_transcript'] == [layout.audio_segments(first_train)[-1]]
    assert [name for _, name, _, _, has in corpus['segments'] if not has] == missing


def test_partition_sizes_follow_muse():
    assert demo.partition_sizes(16) == (8, 6, 2)
    proposals = [job['proposal'] for job in demo.plan_corpus(16, 60, seed=0)]
    assert [proposals.count(p) for p in defaults.PORTIONS] == [8, 6, 2]
    for videos in range(1, 40):
        train, devel, test = demo.partition_sizes(videos)
        assert train + devel + test == videos and train >= devel >= 0 and test >= 0
        assert (devel >= 1) == (videos >= 2) and (test >= 1) == (videos >= 4)


def test_segment_audio_starts_at_its_first_label_timestamp(corpus):
    step = paths.LABEL_STEP_MS
    for video_id in corpus['partition']:
        labels = _labels(corpus, 'arousal', video_id)
        segments = _segments(corpus, video_id)
        previous = None
        for number, (_, name, start_ms, end_ms, _) in enumerate(segments, start=1):
            own = labels[labels[:, 2] == number, 0]
            assert (own[0], own[-1] + step) == (start_ms, end_ms)
            info = soundfile.info(corpus['layout'].audio_path(name))
            assert abs(info.frames - (end_ms - start_ms) * info.samplerate / 1000) < 1
            samples, _ = soundfile.read(corpus['layout'].audio_path(name), dtype='int16')
            if previous is not None:
                # The shared boundary frame is the same stretch of the video in both files.
                shared = step * info.samplerate // 1000
                assert np.array_equal(previous[-shared:], samples[:shared])
            previous = samples
        assert segments[0][2] == 0 and segments[-1][3] == corpus['seconds'] * 1000


def test_audio_formats_vary_and_carry_low_noise(corpus):
    formats = set()
    for video_id in corpus['partition']:
        for _, name, _, _, _ in _segments(corpus, video_id):
            info = soundfile.info(corpus['layout'].audio_path(name))
            formats.add((info.samplerate, info.channels))
            assert info.subtype == 'PCM_16'
        samples = _video_audio(corpus, video_id)
        assert len(samples) == corpus['seconds'] * 16000
        first_word = _video_words(corpus, video_id)[0][0]
        silence = samples[:int((first_word - 0.05) * 16000)]
        noise_rms = np.sqrt(np.mean(silence ** 2))
        assert 1e-4 < noise_rms < 0.01, 'background noise should be present but low'
        assert np.abs(samples).max() < 1.0
    assert formats <= set(demo.AUDIO_FORMATS) and len(formats) >= 2
    assert any(channels == 2 for _, channels in formats)


def test_label_segments_repeat_boundaries_and_cover_the_audio(corpus):
    boundaries, spread = 0, {}
    for video_id in corpus['partition']:
        per_dimension = {}
        for dimension in paths.DIMENSIONS:
            rows = _labels(corpus, dimension, video_id)
            timestamps, values, segments = rows[:, 0], rows[:, 1], rows[:, 2]
            assert np.all(np.abs(values) <= 1.0)
            assert segments[0] == 1 and set(np.diff(segments)) <= {0, 1}
            steps = np.diff(timestamps)
            new_segment = np.diff(segments) == 1
            # Inside a segment: 250 ms apart; across a boundary: the same row twice.
            assert np.all(steps[~new_segment] == paths.LABEL_STEP_MS)
            assert np.all(steps[new_segment] == 0)
            assert np.all(np.diff(values)[new_segment] == 0)
            boundaries += int(new_segment.sum())
            last_frame = corpus['seconds'] * 1000 - paths.LABEL_STEP_MS
            assert np.array_equal(np.unique(timestamps),
                                  np.arange(0, last_frame + 1, paths.LABEL_STEP_MS))
            assert np.mean(np.abs(np.diff(values)[~new_segment])) < 0.1
            assert np.std(values) > 0.02
            spread.setdefault(dimension, []).append(values)
            per_dimension[dimension] = (timestamps, segments)
        # Segments are stretches of the video, shared by both dimensions.
        assert np.array_equal(per_dimension['arousal'], per_dimension['valence'])
    assert boundaries >= len(corpus['partition'])
    for dimension, values in spread.items():
        assert np.std(np.concatenate(values)) > 0.3, dimension


def test_mac_litter_is_present_and_hidden(corpus):
    muse, layout = corpus['muse'], corpus['layout']
    first = paths.segment_name('1', 1)
    litter = [os.path.join(muse, 'metadata', '.DS_Store'),
              os.path.join(layout.task_path, '.DS_Store'),
              os.path.join(layout.audio_dir('1'), '._%s.wav' % first),
              os.path.join(layout.transcript_dir('1'), '._%s.csv' % first),
              os.path.join(layout.label_dir('arousal'), '.DS_Store'),
              os.path.join(layout.label_dir('valence'), '._1.csv')]
    for path in litter:
        assert os.path.isfile(path), path
        assert helper.is_hidden(os.path.basename(path))
    with open(litter[2], 'rb') as handle:
        assert handle.read(4) == b'\x00\x05\x16\x07'   # AppleDouble magic
    # A reader that forgot to skip hidden files would trip on binary litter.
    with pytest.raises(helper.InputError):
        helper.read_table(litter[3], TRANSCRIPT_COLUMNS)


# --------------------------------------------------------------------------
# Transcripts: a recogniser's times, truth per segment
# --------------------------------------------------------------------------
def test_transcripts_are_video_ms_within_the_stated_jitter_of_the_truth(corpus):
    errors = []
    for _, name, start_ms, end_ms, has_transcript in corpus['segments']:
        truth = _truth_words(corpus, name)
        assert all(0 <= start < end <= (end_ms - start_ms) / 1000 for start, end, _ in truth)
        assert all(b[0] >= a[1] for a, b in zip(truth, truth[1:])), 'words overlap'
        if not has_transcript:
            continue
        rows = helper.read_table(corpus['layout'].transcript_path(name), TRANSCRIPT_COLUMNS)
        assert {segment for _, _, segment, _ in rows} == {paths.split_segment_name(name)[1]}
        tokens = [(s, e, t) for s, e, _, t in rows if t != demo.FILLER]
        assert [w for _, _, t in tokens for w in normalise_words(t)] == \
            [w for _, _, w in truth]
        assert any(t[0].isupper() for _, _, t in tokens)
        assert any(t[-1] in ',.!?' for _, _, t in tokens)
        for (start, end, _), (true_start, true_end, _) in zip(tokens, truth):
            errors += [start - (start_ms + 1000 * true_start), end - (start_ms + 1000 * true_end)]
    errors = np.abs(errors)
    # off like a recogniser's (rounded to whole ms), never beyond the stated jitter
    assert errors.max() <= demo.TIMING_JITTER_MS + 0.5 and errors.mean() > 10


@pytest.mark.slow
def test_no_word_straddles_a_segment_boundary(stats_corpus):
    for video_id in stats_corpus['partition']:
        rows = helper.read_table(os.path.join(stats_corpus['truth'], 'sentences', video_id + '.csv'),
                                 [('start', float), ('end', float)] + [(c, str) for c in (
                                     'arousal', 'valence', 'speed', 'pitch', 'amplitude',
                                     'positive', 'negative')])
        spoken = sum(len(normalise_words(w)) for _, _, w in _video_words(stats_corpus,
                                                                                video_id))
        assert spoken == len(_video_words(stats_corpus, video_id))
        for _, _, start_ms, end_ms, _ in _segments(stats_corpus, video_id)[1:]:
            # the boundary frame is silent: no sentence is spoken across it
            assert all(end <= start_ms / 1000 or start >= (start_ms + 250) / 1000
                       for start, end, *_ in rows)


@pytest.mark.slow
def test_fillers_are_written_but_not_spoken(stats_corpus):
    checked = 0
    for _, name, _, _, has_transcript in stats_corpus['segments']:
        if not has_transcript:
            continue
        samples = audio.read_file(stats_corpus['layout'].audio_path(name), 16000)
        rows = helper.read_table(stats_corpus['layout'].transcript_path(name), TRANSCRIPT_COLUMNS)
        truth = _truth_words(stats_corpus, name)
        words = 0
        for _, _, _, token in rows:
            if token == demo.FILLER and 0 < words < len(truth):
                gap_start, gap_end = truth[words - 1][1], truth[words][0]
                assert gap_end - gap_start >= demo.FILLER_PAUSE[0] - 1e-3
                gap = samples[int(gap_start * 16000):int(gap_end * 16000)]
                assert np.sqrt(np.mean(gap ** 2)) < 0.01, 'something spoken at a filler'
                checked += 1
            words += len(normalise_words(token))
    assert checked >= 3


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
def test_same_seed_same_bytes_whatever_the_workers(corpus, tmp_path):
    again = _build(str(tmp_path / 'again'), workers=2)
    for name in ('muse', 'truth'):
        files = _all_files(corpus[name])
        assert files == _all_files(again[name]) and len(files) > 10
        match, mismatch, errors = filecmp.cmpfiles(corpus[name], again[name], files, shallow=False)
        assert mismatch == [] and errors == [] and len(match) == len(files)


@pytest.mark.slow
def test_another_seed_gives_another_corpus(corpus, tmp_path):
    other = _build(str(tmp_path / 'other'), seed=1)
    for relative in (os.path.join('c1_muse_wild', 'audio_segments', '2', '2_1.wav'),
                     os.path.join('c1_muse_wild', 'label_segments', 'arousal', '2.csv')):
        assert not filecmp.cmp(os.path.join(corpus['muse'], relative),
                               os.path.join(other['muse'], relative), shallow=False)


# --------------------------------------------------------------------------
# Learnability: arousal from the sound, valence from the words
# --------------------------------------------------------------------------
def _sentence_measures(corpus):
    """Per sentence, measured from the written files: RMS of its audio span,
    words per second, word polarity, mean arousal and valence labels."""
    rows = []
    for video_id in corpus['partition']:
        samples = _video_audio(corpus, video_id)
        words = _video_words(corpus, video_id)
        arousal, valence = (_labels(corpus, d, video_id) for d in paths.DIMENSIONS)
        sentences = helper.read_table(os.path.join(corpus['truth'], 'sentences', video_id + '.csv'),
                                      [('start', float), ('end', float)] + [(c, str) for c in (
                                          'arousal', 'valence', 'speed', 'pitch', 'amplitude',
                                          'positive', 'negative')])
        for start, end, *_ in sentences:
            spoken = [w for s, e, w in words if s >= start - 1e-3 and e <= end + 1e-3]
            positive = sum(w in demo.POSITIVE_WORDS for w in spoken)
            negative = sum(w in demo.NEGATIVE_WORDS for w in spoken)
            assert positive + negative >= 3, 'too few polar words in %r' % spoken
            inside = (arousal[:, 0] >= start * 1000) & (arousal[:, 0] + 250 <= end * 1000)
            rms = np.sqrt(np.mean(samples[int(start * 16000):int(end * 16000)] ** 2))
            rows.append((rms, len(spoken) / (end - start), (positive - negative) / len(spoken),
                         arousal[inside, 1].mean(), valence[inside, 1].mean()))
    return np.array(rows)


@pytest.mark.slow
def test_labels_are_learnable_from_the_two_sides(stats_corpus):
    rms, rate, polarity, arousal, valence = _sentence_measures(stats_corpus).T
    assert len(rms) >= 50

    def r(a, b):
        return np.corrcoef(a, b)[0, 1]
    assert r(arousal, rms) > 0.7, 'arousal must be heard in loudness'
    assert r(arousal, rate) > 0.5, 'arousal must be heard in speech rate'
    assert r(valence, polarity) > 0.7, 'valence must be read in the words'
    assert abs(r(valence, rms)) < 0.35, 'loudness must not give valence away'
    assert abs(r(valence, rate)) < 0.35, 'speech rate must not give valence away'
    assert abs(r(arousal, polarity)) < 0.35, 'the words must not give arousal away'


@pytest.mark.slow
def test_voices_vary_across_videos(stats_corpus):
    rows = helper.read_table(os.path.join(stats_corpus['truth'], 'recordings.csv'),
                             [('Id', str), ('Proposal', str), ('voice', str), ('sample_rate', int),
                              ('channels', int), ('seconds', float), ('segments', int),
                              ('sentences', int), ('words', int)])
    assert len({voice for _, _, voice, *_ in rows}) == len(rows)
    assert {voice for _, _, voice, *_ in rows} <= set(demo.VOICES)


def test_vocabulary_keeps_polar_words_apart():
    positive, negative = set(demo.POSITIVE_WORDS), set(demo.NEGATIVE_WORDS)
    assert len(positive) == len(negative) == len(demo.POSITIVE_WORDS)
    assert not positive & negative
    neutral = set(normalise_words(' '.join(demo.TEMPLATES + demo.CAR_PARTS + demo.BRANDS)))
    assert not neutral & (positive | negative)


def test_synthesis_is_cached_and_trimmed():
    demo.synthesise_word.cache_clear()
    loud = demo.synthesise_word('engine', 'en+m3', 175, 50, 200)
    again = demo.synthesise_word('engine', 'en+m3', 175, 50, 200)
    assert again is loud and demo.synthesise_word.cache_info().hits == 1
    threshold = 0.02 * np.abs(loud).max()
    edge = int(0.01 * demo.ESPEAK_RATE)
    assert np.abs(loud[:edge]).max() > threshold and np.abs(loud[-edge:]).max() > threshold
    quiet = demo.synthesise_word('engine', 'en+m3', 175, 50, 30)
    assert np.sqrt(np.mean(loud ** 2)) > 4 * np.sqrt(np.mean(quiet ** 2))


@pytest.mark.slow
def test_opinion_words_of_devel_and_test_recur_in_train(stats_corpus):
    """A model can only learn valence from words it met in training."""
    polar = set(demo.POSITIVE_WORDS) | set(demo.NEGATIVE_WORDS)
    counts = {portion: {} for portion in defaults.PORTIONS}
    for video_id, portion in stats_corpus['partition'].items():
        for _, _, word in _video_words(stats_corpus, video_id):
            if word in polar:
                counts[portion][word] = counts[portion].get(word, 0) + 1
    held_out = set(counts['devel']) | set(counts['test'])
    assert held_out <= set(counts['train'])
    assert np.median(list(counts['train'].values())) >= 3


# --------------------------------------------------------------------------
# Reruns, interruptions, the command line
# --------------------------------------------------------------------------
def test_rerun_skips_overwrite_redoes_and_foreign_folders_are_kept(tmp_path):
    small = _build(str(tmp_path / 'small'), videos=2, seconds=8.0)
    assert small['summary']['skipped'] is False
    before = {f: os.stat(os.path.join(small['muse'], f)).st_mtime_ns
              for f in _all_files(small['muse'])}
    again = demo.generate_corpus(small['muse'], small['truth'], 2, 8.0, 0)
    assert again['skipped'] is True and again['words'] == small['summary']['words']
    assert before == {f: os.stat(os.path.join(small['muse'], f)).st_mtime_ns
                      for f in _all_files(small['muse'])}
    copy = str(tmp_path / 'copy')
    shutil.copytree(small['muse'], copy)
    redone = demo.generate_corpus(small['muse'], small['truth'], 2, 8.0, 0, overwrite=True)
    assert redone['skipped'] is False
    assert not filecmp.dircmp(copy, small['muse']).diff_files
    foreign = tmp_path / 'real_muse'
    foreign.mkdir()
    (foreign / 'precious.txt').write_text('not a demo corpus')
    with pytest.raises(ValueError, match='refusing'):
        demo.generate_corpus(str(foreign), str(tmp_path / 'truth2'), 2, 8.0, 0)
    assert (foreign / 'precious.txt').read_text() == 'not a demo corpus'


def test_interrupted_run_keeps_the_previous_corpus(tmp_path, monkeypatch):
    small = _build(str(tmp_path / 'small'), videos=2, seconds=8.0)
    before = _all_files(str(tmp_path))
    calls, make_recording = [], demo.make_recording

    def fail_on_second(job):
        calls.append(job['id'])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return make_recording(job)
    monkeypatch.setattr(demo, 'make_recording', fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        demo.generate_corpus(small['muse'], small['truth'], 2, 8.0, seed=5, workers=1)
    assert _all_files(str(tmp_path)) == before, 'half a corpus or staging left behind'
    assert sorted(os.listdir(tmp_path)) == ['small']
    assert demo.generate_corpus(small['muse'], small['truth'], 2, 8.0, 0)['skipped'] is True


@pytest.mark.slow
def test_command_line_writes_the_corpus_and_refuses_foreign_flags(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, 'make_demo_corpus.py')]
                              + list(args), cwd=REPO, capture_output=True, text=True)
    muse, truth = str(tmp_path / 'MuSe-CaR'), str(tmp_path / 'truth')
    done = run('--output_dir', muse, '--truth_dir', truth, '--videos', '2',
               '--seconds_per_video', '8', '--workers', '1')
    assert done.returncode == 0, done.stderr
    assert 'demo corpus' in done.stderr and 'without a transcript' in done.stderr
    assert paths.read_partition(paths.MuseLayout(muse).partition_path) == {'1': 'train',
                                                                             '2': 'devel'}
    foreign = run('--output_dir', muse, '--aligner', 'given')
    assert foreign.returncode != 0 and 'aligner' in foreign.stderr
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'keep.txt').write_text('x')
    refused = run('--output_dir', str(tmp_path / 'mine'), '--truth_dir', truth + '2',
                  '--videos', '1', '--seconds_per_video', '5')
    assert refused.returncode == 1 and 'refusing' in refused.stderr
