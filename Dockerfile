# The emotion service (serve.py) by default, as an unprivileged user; the same image trains and
# evaluates on a CUDA box (pass --user "$(id -u)" so its outputs belong to you).
#   docker build -t semantic-ser .
#   docker run -p 8000:8000 -v /data/work/exported:/model:ro semantic-ser
#   docker run -p 8000:8000 -v /data/work:/work:ro semantic-ser \
#       python serve.py --checkpoint /work/checkpoints
#   docker run --gpus all -v /data/MuSe-CaR:/app/MuSe-CaR:ro -v /data/work:/work \
#       semantic-ser python train.py --dataset_dir /work/tfrecords --train_dir /work/checkpoints
FROM tensorflow/tensorflow:2.21.0-gpu

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      espeak libespeak-dev ffmpeg build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# The image's own TensorFlow (with CUDA) stays: the tensorflow-cpu pin is left out.
# aeneas is built against the numpy it runs with, without build isolation.
RUN grep -v '^tensorflow' requirements.txt > /tmp/requirements-gpu.txt \
 && pip install --no-cache-dir setuptools==80.9.0 wheel \
 && pip install --no-cache-dir -r /tmp/requirements-gpu.txt \
 && pip install --no-cache-dir --no-build-isolation aeneas==1.7.3.0 \
 && python -m aeneas.diagnostics

COPY . .
ENV TF_USE_LEGACY_KERAS=1
# The service faces untrusted callers: it runs as a user who owns nothing,
# the code read-only to it; mounted work directories need to be readable by it.
RUN useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ser \
 && chmod -R a+rX,go-w /app
USER ser
EXPOSE 8000
# An export_model.py directory is mounted at /model: it carries its word vectors.
# (A checkpoint directory names them relative to itself, e.g. ../embeddings/,
# so mount the whole work directory for --checkpoint.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["python", "serve.py", "--saved_model", "/model", "--host", "0.0.0.0", "--port", "8000"]
