"""The pipeline's defaults and the names its settings choose from, in one place: the flags of every script and
benchmark (helper.SHARED_FLAGS), the settings objects of the library and the
Makefile's demo schedule all read them from here. Plain values, so that a
script's --help and the Makefile need no TensorFlow."""

# The portions of the partition (partition_generator.py).
PORTIONS = ('train', 'devel', 'test')
# Where a segment's word times come from (--aligner): MuSe's own, or re-aligned
# against its audio by the phonetic aligner or by aeneas (ser/alignment.py).
ALIGNERS = ('given', 'phonetic', 'aeneas')
# What eval.py evaluates unless told (the portion to choose a model by), and
# what the ablation reports (the held-out one).
EVAL_PORTION = 'devel'
ABLATION_PORTION = 'test'

# ---- Features (data_generator.py) ----
SAMPLE_RATE = 16000
EMBEDDING_DIM = 100

# ---- The model (models.py) ----
HIDDEN_UNITS = 256
# What the model hears (the ablation of the paper's claim): both inputs, the
# audio alone (zero embeddings) or the text alone (zero audio frames).
MODALITIES = ('both', 'audio', 'text')
MODALITY = 'both'

# ---- Training (train.py) ----
BATCH_SIZE = 5
SEQUENCE_LENGTH = 100
WINDOW_SCHEMES = ('per_segment', 'tight', 'packed')
# The schemes that compute less padding trained less accurate models on the
# demo corpus, at equal steps and at equal real frames (RESULTS.md).
WINDOWS = 'per_segment'
SKIP_PADDING = True
LEARNING_RATE = 5e-4
LOG_EVERY_N_STEPS = 10
TRAIN_DIR = 'checkpoints/'
# Arithmetic precisions of --precision. 'auto' is bf16 on a CPU with native
# bf16 instructions, fp16 (with a loss scale) on a GPU with tensor cores, fp32
# otherwise (ser/mixed_precision.py). train.py and eval.py default to auto; its
# bf16 trained the demo schedule as well as fp32 (RESULTS.md); what serves a model
# (predict.py, the service, the export) runs fp32.
PRECISIONS = ('fp32', 'bf16', 'fp16', 'auto')
PRECISION = 'auto'
# The jobs of a cluster on TensorFlow's distributed runtime.
CLUSTER_JOBS = ('ps', 'worker')

# ---- Running a model (eval.py, predict.py, serve.py) ----
# Long enough that the two frames of context a chunk adds are a small part of
# its work, short enough that an hour of audio stays in bounded memory
# (BENCHMARKS.md, long audio).
CHUNK_SECONDS = 60.0

# ---- The demo's schedule (the Makefile's demo, ablation and cluster targets) ----
# What a 2-core CPU trains in a few minutes on the generated corpus.
DEMO_SAMPLE_RATE = 8000
DEMO_STEPS = 600
DEMO_LEARNING_RATE = 1e-3
DEMO_SEQUENCE_LENGTH = 100
CLUSTER_DEMO_STEPS = 100
