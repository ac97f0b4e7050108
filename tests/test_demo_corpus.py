"""The demo corpus: MuSe-CaR layout, truth that matches the transcripts and the
audio, labels learnable the way the paper fuses them (arousal from the sound,
valence from the words), determinism, Mac litter, safe reruns."""

import filecmp
import os
import shutil

import numpy as np
import pytest
import soundfile

import helper
import make_demo_corpus as demo

SECONDS = 15.0
LABEL_COLUMNS = [('timestamp', int), ('value', float), ('segment_id', int)]
TRANSCRIPT_COLUMNS = [('start', float), ('end', float), ('sentence', str)]
WORD_COLUMNS = [('start', float), ('end', float), ('word', str)]


def _build(root, videos=4, seconds=SECONDS, seed=0, workers=1):
    muse, truth = os.path.join(root, 'MuSe-CaR'), os.path.join(root, 'truth')
    summary = demo.generate_corpus(muse, truth, videos, seconds, seed, workers=workers)
    return {'muse': muse, 'truth': truth, 'summary': summary, 'seconds': seconds,
            'partition': helper.read_partition(helper.muse_partition_path(muse))}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    return _build(str(tmp_path_factory.mktemp('seed0')))


@pytest.fixture(scope='module')
def stats_corpus(tmp_path_factory):
    """Enough sentences (~70) for correlations to mean something."""
    return _build(str(tmp_path_factory.mktemp('stats')), videos=8, seconds=60.0, seed=3, workers=2)


def _labels(corpus, dimension, recording_id):
    path = helper.label_segment_path(corpus['muse'], dimension, recording_id)
    if not os.path.exists(path):
        path = os.path.join(corpus['truth'], 'withheld_labels', dimension, recording_id + '.csv')
    return np.array(helper.read_table(path, LABEL_COLUMNS), dtype=float)


def _transcript(corpus, recording_id):
    return helper.read_table(helper.transcript_path(corpus['muse'], recording_id),
                             TRANSCRIPT_COLUMNS)


def _words(corpus, recording_id):
    return helper.read_table(os.path.join(corpus['truth'], 'word_timings', recording_id + '.csv'),
                             WORD_COLUMNS)


def _all_files(root):
    found = []
    for directory, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, n), root) for n in names]
    return sorted(found)


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------
def test_layout_matches_design_and_test_labels_are_withheld(corpus):
    muse, partition = corpus['muse'], corpus['partition']
    ids = list(partition)
    assert ids == ['1', '2', '3', '4']
    assert sorted(partition.values()) == ['devel', 'test', 'train', 'train']
    assert helper.list_ids(os.path.join(muse, 'audio'), '.wav') == sorted(ids)
    assert helper.list_ids(os.path.join(muse, 'transcriptions'), '.csv') == sorted(ids)
    labelled = sorted(i for i, p in partition.items() if p != 'test')
    for dimension in helper.DIMENSIONS:
        folder = os.path.join(muse, 'label_segments', dimension)
        assert helper.list_ids(folder, '.csv') == labelled
    assert helper.list_dir(muse) == ['audio', 'label_segments', 'metadata', 'transcriptions']
    assert helper.list_dir(os.path.join(muse, 'metadata')) == ['partition.csv']
    for recording_id in ids:
        rows = _transcript(corpus, recording_id)   # read_table checks the header
        assert rows and all(0 <= s < e <= corpus['seconds'] for s, e, _ in rows)
    summary = corpus['summary']
    assert (summary['videos'], summary['seconds']) == (4, 4 * SECONDS)
    assert summary['words'] == sum(len(_words(corpus, i)) for i in ids)


def test_partition_sizes_follow_muse():
    assert demo.partition_sizes(16) == (8, 6, 2)
    proposals = [job['proposal'] for job in demo.plan_corpus(16, 60, seed=0)]
    assert [proposals.count(p) for p in helper.PORTIONS] == [8, 6, 2]
    for videos in range(1, 40):
        train, devel, test = demo.partition_sizes(videos)
        assert train + devel + test == videos and train >= devel >= 0 and test >= 0
        assert (devel >= 1) == (videos >= 2) and (test >= 1) == (videos >= 4)


def test_audio_formats_vary_and_carry_low_noise(corpus):
    formats = set()
    for recording_id in corpus['partition']:
        path = helper.audio_path(corpus['muse'], recording_id)
        info = soundfile.info(path)
        formats.add((info.samplerate, info.channels))
        assert info.subtype == 'PCM_16'
        assert info.frames == round(corpus['seconds'] * info.samplerate)
        samples = helper.read_audio(path, 16000)
        first_word = _words(corpus, recording_id)[0][0]
        silence = samples[:int((first_word - 0.05) * 16000)]
        noise_rms = np.sqrt(np.mean(silence ** 2))
        assert 1e-4 < noise_rms < 0.01, 'background noise should be present but low'
        assert np.abs(samples).max() < 1.0
    assert formats <= set(demo.AUDIO_FORMATS) and len(formats) >= 2
    assert any(channels == 2 for _, channels in formats)


def test_label_segments_repeat_boundaries_and_cover_the_audio(corpus):
    boundaries, spread = 0, {}
    for recording_id in corpus['partition']:
        per_dimension = {}
        for dimension in helper.DIMENSIONS:
            rows = _labels(corpus, dimension, recording_id)
            timestamps, values, segments = rows[:, 0], rows[:, 1], rows[:, 2]
            assert np.all(np.abs(values) <= 1.0)
            assert segments[0] == 1 and np.all(np.diff(segments) >= 0)
            assert set(np.diff(segments)) <= {0, 1}
            steps = np.diff(timestamps)
            new_segment = np.diff(segments) == 1
            # Inside a segment: 250 ms apart; across a boundary: the same row twice.
            assert np.all(steps[~new_segment] == helper.LABEL_STEP_MS)
            assert np.all(steps[new_segment] == 0)
            assert np.all(np.diff(values)[new_segment] == 0)
            boundaries += int(new_segment.sum())
            unique = np.unique(timestamps)
            last_frame = corpus['seconds'] * 1000 - helper.LABEL_STEP_MS
            assert np.array_equal(unique, np.arange(0, last_frame + 1, helper.LABEL_STEP_MS))
            # Smooth like a trace, yet moving (a short recording may hold two
            # sentences of one mood, so only a floor here; the spread is checked
            # over the corpus below).
            assert np.mean(np.abs(np.diff(values)[~new_segment])) < 0.1
            assert np.std(values) > 0.02
            spread.setdefault(dimension, []).append(values)
            per_dimension[dimension] = (timestamps, segments)
        # Segments are stretches of the video, shared by both dimensions.
        assert np.array_equal(per_dimension['arousal'], per_dimension['valence'])
    assert boundaries >= len(corpus['partition']) * 2
    for dimension, values in spread.items():
        assert np.std(np.concatenate(values)) > 0.3, dimension


def test_mac_litter_is_present_and_hidden(corpus):
    muse = corpus['muse']
    first = list(corpus['partition'])[0]
    litter = [os.path.join('metadata', '.DS_Store'), os.path.join('audio', '.DS_Store'),
              os.path.join('audio', '._%s.wav' % first),
              os.path.join('transcriptions', '._%s.csv' % first),
              os.path.join('label_segments', 'arousal', '.DS_Store')]
    for relative in litter:
        path = os.path.join(muse, relative)
        assert os.path.isfile(path), relative
        assert helper.is_hidden(os.path.basename(path))
    with open(os.path.join(muse, 'audio', '._%s.wav' % first), 'rb') as handle:
        assert handle.read(4) == b'\x00\x05\x16\x07'   # AppleDouble magic
    # A reader that forgot to skip hidden files would trip on binary litter.
    with pytest.raises(helper.InputError):
        helper.read_table(os.path.join(muse, 'transcriptions', '._%s.csv' % first),
                          TRANSCRIPT_COLUMNS)


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


def test_another_seed_gives_another_corpus(corpus, tmp_path):
    other = _build(str(tmp_path / 'other'), seed=1)
    for relative in (os.path.join('audio', '1.wav'), os.path.join('transcriptions', '1.csv')):
        assert not filecmp.cmp(os.path.join(corpus['muse'], relative),
                               os.path.join(other['muse'], relative), shallow=False)


# --------------------------------------------------------------------------
# Truth against transcripts and audio
# --------------------------------------------------------------------------
def _check_truth(corpus):
    for recording_id in corpus['partition']:
        transcript, words = _transcript(corpus, recording_id), _words(corpus, recording_id)
        times = np.array([(s, e) for s, e, _ in words])
        assert np.all(times[:, 0] < times[:, 1])
        assert np.all(times[1:, 0] >= times[:-1, 1]), 'words overlap or are unsorted'
        assert times[0, 0] >= 0 and times[-1, 1] <= corpus['seconds']
        spoken = [helper.normalise_words(text) for _, _, text in transcript]
        assert [w for _, _, w in words] == [w for sentence in spoken for w in sentence]
        cursor = 0
        for (start, end, _), sentence_words in zip(transcript, spoken):
            mine = times[cursor:cursor + len(sentence_words)]
            cursor += len(sentence_words)
            # The transcriber's margins: a little before the first, after the last word.
            assert 0.0 < mine[0, 0] - start <= 0.301
            assert 0.0 < end - mine[-1, 1] <= 0.301
        spans = np.array([(s, e) for s, e, _ in transcript])
        assert np.all(spans[1:, 0] >= spans[:-1, 1]), 'transcript sentences overlap'


def test_truth_timings_match_transcripts(corpus, stats_corpus):
    _check_truth(corpus)
    _check_truth(stats_corpus)


def test_fillers_are_written_but_not_spoken(stats_corpus):
    fillers = 0
    for recording_id in stats_corpus['partition']:
        samples = helper.read_audio(helper.audio_path(stats_corpus['muse'], recording_id), 16000)
        words = iter(_words(stats_corpus, recording_id))
        for _, _, text in _transcript(stats_corpus, recording_id):
            tokens = text.split()
            assert tokens[0][0].isupper() and tokens[-1][-1] in '.!?'
            previous_end = None
            for token in tokens:
                if token == demo.FILLER:
                    fillers += 1
                    gap_start = previous_end
                    continue
                for _ in helper.normalise_words(token):
                    start, end, _ = next(words)
                    if previous_end is not None and gap_start is not None:
                        gap = samples[int(gap_start * 16000):int(start * 16000)]
                        assert start - gap_start >= demo.FILLER_PAUSE[0] - 1e-3
                        assert np.sqrt(np.mean(gap ** 2)) < 0.01, 'something spoken at a filler'
                    gap_start, previous_end = None, end
    assert fillers >= 3


# --------------------------------------------------------------------------
# Learnability: arousal from the sound, valence from the words
# --------------------------------------------------------------------------
def _sentence_measures(corpus):
    """Per sentence, measured from the written files: RMS of its audio span,
    words per second, word polarity, mean arousal and valence labels."""
    rows = []
    for recording_id in corpus['partition']:
        samples = helper.read_audio(helper.audio_path(corpus['muse'], recording_id), 16000)
        arousal, valence = (_labels(corpus, d, recording_id) for d in helper.DIMENSIONS)
        for start, end, text in _transcript(corpus, recording_id):
            words = helper.normalise_words(text)
            positive = sum(w in demo.POSITIVE_WORDS for w in words)
            negative = sum(w in demo.NEGATIVE_WORDS for w in words)
            assert positive + negative >= 3, 'too few polar words in %r' % text
            inside = (arousal[:, 0] >= start * 1000) & (arousal[:, 0] + 250 <= end * 1000)
            rms = np.sqrt(np.mean(samples[int(start * 16000):int(end * 16000)] ** 2))
            rows.append((rms, len(words) / (end - start), (positive - negative) / len(words),
                         arousal[inside, 1].mean(), valence[inside, 1].mean()))
    return np.array(rows)


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


def test_voices_vary_across_recordings(stats_corpus):
    rows = helper.read_table(os.path.join(stats_corpus['truth'], 'recordings.csv'),
                             [('Id', str), ('Proposal', str), ('voice', str), ('sample_rate', int),
                              ('channels', int), ('seconds', float), ('sentences', int),
                              ('words', int)])
    assert len({voice for _, _, voice, *_ in rows}) == len(rows)
    assert {voice for _, _, voice, *_ in rows} <= set(demo.VOICES)


def test_vocabulary_keeps_polar_words_apart():
    positive, negative = set(demo.POSITIVE_WORDS), set(demo.NEGATIVE_WORDS)
    assert len(positive) == len(negative) == len(demo.POSITIVE_WORDS)
    assert not positive & negative
    neutral = set(helper.normalise_words(' '.join(demo.TEMPLATES + demo.CAR_PARTS + demo.BRANDS)))
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


# --------------------------------------------------------------------------
# Reruns and interruptions
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


def test_opinion_words_of_devel_and_test_recur_in_train(stats_corpus):
    """A model can only learn valence from words it met in training."""
    polar = set(demo.POSITIVE_WORDS) | set(demo.NEGATIVE_WORDS)
    counts = {portion: {} for portion in helper.PORTIONS}
    for recording_id, portion in stats_corpus['partition'].items():
        for _, _, word in _words(stats_corpus, recording_id):
            if word in polar:
                counts[portion][word] = counts[portion].get(word, 0) + 1
    held_out = set(counts['devel']) | set(counts['test'])
    assert held_out <= set(counts['train'])
    assert np.median(list(counts['train'].values())) >= 3
