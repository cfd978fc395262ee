#!/usr/bin/env bash
# Installs the system packages msatrain needs on Debian/Ubuntu, only those that are missing.
set -euo pipefail

missing=()
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }

need_cmd cmake cmake
need_cmd ninja ninja-build
need_cmd g++ g++
need_cmd python3 python3
need_cmd npm npm
need_pkg libopenmpi-dev
need_pkg openmpi-bin
need_pkg libeigen3-dev
need_pkg libyaml-cpp-dev
need_pkg libhdf5-dev
need_pkg python3-h5py  # tests read checkpoints the way users do (h5py)
[[ -f /usr/include/gtest/gtest.h ]] || missing+=(libgtest-dev)

if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
