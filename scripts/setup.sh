#!/usr/bin/env bash
# Build both virtualenvs and the embedded Apache Kafka on a fresh machine (idempotent; a no-op
# when up to date).
#   .venv              framestream itself, its tests, the fallback broker (Tansu) and ClickHouse (chDB)
#   .venv-triton       the real tritonserver from nvidia-pytriton; its Python backend needs numpy < 2
#   infra/kafka/libs/  Apache Kafka (KRaft) and its runtime jars from Maven Central (needs Java 17+ and
#                      Maven); without them the embedded stack and the tests fall back to Tansu
#   Debian packages    servers the integration tests talk to (mosquitto: the MQTT bridge), installed
#                      with apt-get when missing and this runs as root; otherwise their tests skip, naming them
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"

stamp_ok() { [[ -f "$1/.framestream-stamp" && "$(cat "$1/.framestream-stamp")" == "$2" ]]; }

main_hash="$(sha256sum pyproject.toml | cut -c1-16)"
if ! stamp_ok .venv "$main_hash"; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet -e '.[embedded,test]'
  # ByteTrack, without its opencv-python requirement (it would replace opencv-python-headless's cv2)
  .venv/bin/pip install --quiet --no-deps trackers==2.6.1
  # Solar-cell images for the classifier (CC BY-NC-SA: installed here, never committed)
  .venv/bin/pip install --quiet elpv-dataset==1.0.0.post1
  echo "$main_hash" > .venv/.framestream-stamp
fi

triton_hash="$(sha256sum infra/triton/requirements.txt | cut -c1-16)"
if ! stamp_ok .venv-triton "$triton_hash"; then
  "$PYTHON" -m venv .venv-triton
  .venv-triton/bin/pip install --quiet -r infra/triton/requirements.txt
  echo "$triton_hash" > .venv-triton/.framestream-stamp
fi

kafka_hash="$(sha256sum infra/kafka/pom.xml | cut -c1-16)"
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -1 |
               awk '{ print ($1 == 1 ? $2 : $1) }'; }
if stamp_ok infra/kafka/libs "$kafka_hash"; then
  kafka_status="infra/kafka/libs ready (Apache Kafka)"
elif ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  kafka_status="no java or mvn on PATH: skipped Apache Kafka; the embedded broker will be Tansu"
elif [[ "$(java_major)" -lt 17 ]]; then
  kafka_status="Java $(java_major) is older than 17: skipped Apache Kafka; the embedded broker will be Tansu"
else
  rm -rf infra/kafka/libs  # a changed pom.xml must not leave old jars on the classpath
  mvn -q -B -Dstyle.color=never -f infra/kafka/pom.xml package | sed 's/\x1b\[[0-9;]*m//g'
  echo "$kafka_hash" > infra/kafka/libs/.framestream-stamp
  kafka_status="infra/kafka/libs ready (Apache Kafka)"
fi
# Debian packages the tests use: "command:package" (append here; one apt-get for all), or
# "-:package" for a library without a command (checked with dpkg).
# GStreamer's RTSP server with x264: the RTSP camera tests (infra/rtsp/rtsp_server.py, system python3).
DEBIAN_PACKAGES=("mosquitto:mosquitto" "-:python3-gi" "-:gir1.2-gst-rtsp-server-1.0" "-:gstreamer1.0-plugins-base"
                 "-:gstreamer1.0-plugins-good" "-:gstreamer1.0-plugins-bad" "-:gstreamer1.0-plugins-ugly")
missing=()
for entry in "${DEBIAN_PACKAGES[@]}"; do
  if [[ "${entry%%:*}" == "-" ]]; then
    dpkg-query -W -f='${Status}' "${entry#*:}" 2>/dev/null | grep -q "install ok installed" || missing+=("${entry#*:}")
    continue
  fi
  command -v "${entry%%:*}" >/dev/null || [[ -x "/usr/sbin/${entry%%:*}" ]] || missing+=("${entry#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    debian_status="installed ${missing[*]}"
  else
    debian_status="not root or no apt-get: ${missing[*]} missing, their tests will skip"
  fi
else
  debian_status="Debian packages present"
fi
# The solar-cell defect classifier served as triton_models/defects: trained here when missing
# (a few minutes on 2 cores), not committed, as weights trained on elpv's CC BY-NC-SA images are
# a derivative of them. Without it the defects model loads but answers UNAVAILABLE.
classifier_status="classifier present"
if [[ ! -f triton_models/defects/1/model.onnx ]]; then
  mkdir -p var
  if .venv/bin/framestream train classifier --dataset elpv --json var/classifier-elpv.json >var/classifier-elpv.log 2>&1; then
    classifier_status="classifier trained ($(grep -m1 'held-out' var/classifier-elpv.log))"
  else
    classifier_status="classifier training failed: see var/classifier-elpv.log"
  fi
fi
echo "setup: .venv and .venv-triton ready; $kafka_status; $debian_status; $classifier_status"
