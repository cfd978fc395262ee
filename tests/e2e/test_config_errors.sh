# Bad configs stop the run before any work, with a message naming the key and where it came from.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
cfg="$TMP/bad.yaml"
base=(--set data.dir="$data" --set run.dir="$TMP/run")

printf 'model:\n  d_model: 64\n  d_modle: 32\n' >"$cfg"
expect_fail "unknown key" "bad.yaml:3: unknown key 'model.d_modle'" "$BIN" train --config "$cfg" "${base[@]}"
printf 'model:\n  n_layers: four\n' >"$cfg"
expect_fail "wrong type" "bad.yaml:2" "$BIN" train --config "$cfg" "${base[@]}"
expect_fail "wrong type names key" "model.n_layers" "$BIN" train --config "$cfg" "${base[@]}"
printf 'train:\n  lr: -1.0\n' >"$cfg"
expect_fail "out of range" "train.lr" "$BIN" train --config "$cfg" "${base[@]}"
expect_fail "unknown --set key" "train.stpes" "$BIN" train --config "$SRC/configs/tiny.yaml" "${base[@]}" --set train.stpes=3
expect_fail "missing config file" "nope.yaml" "$BIN" train --config "$TMP/nope.yaml"
expect_fail "layout does not fit the world" "parallel.dp" "$MPIRUN" 2 "$BIN" train --config "$SRC/configs/tiny.yaml" \
  "${base[@]}" --set parallel.dp=3
expect_fail "batch does not split into micro-batches" "train.micro_batch" "$BIN" train \
  --config "$SRC/configs/tiny.yaml" "${base[@]}" "${TINY_SETS[@]}" --set parallel.dp=1 --set train.micro_batch=3
if "$BIN" --version | grep -q "no CUDA device"; then  # where there is a GPU this config would train
  expect_fail "device cuda without a GPU" "device: cuda, but" "$BIN" train --config "$SRC/configs/tiny.yaml" \
    "${base[@]}" "${TINY_SETS[@]}" --set parallel.dp=1 --set device=cuda --set model.head_dim=32
fi
[[ ! -e "$TMP/run/metrics.jsonl" ]] || fail "a rejected run wrote metrics"
