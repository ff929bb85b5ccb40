# The training image. keeptraining builds it once per change of this file or of
# requirements.txt, then runs every attempt in it with the code folder mounted
# read-only at /workspace/code and a writable output folder at /workspace/output.
# The code is deliberately NOT copied in: a code change must not rebuild the image.
#
# BASE_IMAGE defaults to an official Python slim image (what GitHub runners pull).
# Offline test machines pass the local debootstrap base built by
# scripts/docker-engine.sh instead (it has python3, python3-venv and the host CA bundle).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# A venv, so the image's own python packages and ours never mix (Debian's system
# python refuses `pip install` outside one: PEP 668).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, alone: this layer is reused until requirements.txt changes.
# pip is pointed at the system CA bundle when there is one: it holds any CA the
# base image was given (e.g. for a TLS-intercepting proxy); on python:slim it is the
# ordinary Debian bundle, so nothing changes there.
COPY requirements.txt /opt/keeptraining/requirements.txt
RUN if [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
        export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; \
    fi \
    && pip install --no-cache-dir --progress-bar off -r /opt/keeptraining/requirements.txt

# Training runs as a non-root user. keeptraining may also run the container as the
# caller's uid:gid (so the files it writes belong to the caller); HOME is then set
# by keeptraining, since that uid has no entry here.
RUN groupadd --gid 1000 trainer \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin trainer \
    && mkdir -p /workspace/code /workspace/output /workspace/resume \
    && chown trainer:trainer /workspace/output

WORKDIR /workspace/code
USER trainer
CMD ["python", "nn.py"]
