# Broken checkpoints: a truncated, corrupt or incompatible file is an error naming the file and the problem;
# --resume auto falls back to the newest checkpoint that loads, with a warning; a full disk while saving stops
# the run with a clear message and leaves the previous checkpoint intact.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set eval.every=0
     --set checkpoint.every=2 --set checkpoint.keep=0)
ckpts="$TMP/run/checkpoints"
"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=6 --set run.dir="$TMP/run" >/dev/null
cp "$ckpts/step_00000006.h5" "$TMP/good.h5"

# Truncated newest file: --resume PATH fails, --resume auto falls back to step 4 with a warning.
truncate -s -1000 "$ckpts/step_00000006.h5"
expect_fail "--resume of a truncated file" "checkpoint $ckpts/step_00000006.h5: not a readable HDF5 file" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/run" --resume "$ckpts/step_00000006.h5"
"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/run" --resume auto >"$TMP/fallback.log" 2>&1
grep -qF "warning: --resume auto: checkpoint $ckpts/step_00000006.h5: not a readable HDF5 file" "$TMP/fallback.log" ||
  fail "no fallback warning: $(head -n 5 "$TMP/fallback.log")"
grep -qF "trying the next newest checkpoint" "$TMP/fallback.log" || fail "$(head -n 5 "$TMP/fallback.log")"
grep -qF "resuming from $ckpts/step_00000004.h5 at step 4" "$TMP/fallback.log" || fail "$(head -n 5 "$TMP/fallback.log")"
[[ "$(metric "$TMP/run/metrics.jsonl" step | tr '\n' ' ')" == "1 2 3 4 5 6 7 8 " ]] ||
  fail "steps: $(metric "$TMP/run/metrics.jsonl" step | tr '\n' ' ')"
"$BIN" ckpt inspect "$ckpts/step_00000006.h5" >/dev/null || fail "step 6 was not rewritten by the resumed run"
echo "ok: truncated newest checkpoint -> fell back to step 4, reran steps 5..8"

# Every file broken: an error listing them, not a silent fresh start.
mkdir -p "$TMP/allbad/checkpoints"
head -c 5000 "$TMP/good.h5" >"$TMP/allbad/checkpoints/step_00000006.h5"
echo "step_00000006.h5" >"$TMP/allbad/checkpoints/latest"
expect_fail "--resume auto with nothing loadable" "--resume auto: none of the 1 checkpoints in $TMP/allbad/checkpoints loads" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/allbad" --resume auto

# Flipped bits inside a tensor: caught by its CRC-32 (needs h5py to find the tensor's bytes).
if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
  cp "$TMP/good.h5" "$TMP/flipped.h5"
  /usr/bin/python3 - "$TMP/flipped.h5" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], 'r') as f:
    offset = f['params/layers.1.ffn.w2'].id.get_offset()
with open(sys.argv[1], 'r+b') as f:
    f.seek(offset + 100)
    b = f.read(1)
    f.seek(offset + 100)
    f.write(bytes([b[0] ^ 0x04]))
PY
  expect_fail "--resume of a corrupt tensor" "checkpoint $TMP/flipped.h5: tensor params/layers.1.ffn.w2 is corrupt (CRC-32" \
    "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/flip" --resume "$TMP/flipped.h5"
  expect_fail "inspect of a corrupt tensor" "1 tensor(s) do not match their stored CRC-32" "$BIN" ckpt inspect "$TMP/flipped.h5"
else
  echo "skip: flipped-bit check (python3-h5py not installed; tests/unit/test_checkpoint.cpp covers it)"
fi

# Another model shape, a missing tensor.
expect_fail "resume into a wider model" \
  "checkpoint $TMP/good.h5: tensor params/embed.weight has shape (256, 64) in the file but (256, 32) in this model (this run's model config differs from the checkpoint's: model.d_model (64 -> 32))" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/wide" --set model.d_model=32 --resume "$TMP/good.h5"
expect_fail "resume into a deeper model" "checkpoint $TMP/good.h5: has no tensor params/layers.2.attn_norm" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=8 --set run.dir="$TMP/deep" --set model.n_layers=3 --resume "$TMP/good.h5"
expect_fail "resume from a missing file" "checkpoint $TMP/none.h5: no such file" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/none" --resume "$TMP/none.h5"

# Disk full while saving: a real small tmpfs when this machine lets us mount one, else the fault injection.
full="$TMP/full"
mkdir -p "$full"
if mount -t tmpfs -o size=1600k tmpfs "$full" 2>/dev/null; then
  trap 'umount "$full" 2>/dev/null || true' EXIT
  inject=()
  how="a 1.6 MB tmpfs"
else
  inject=(env MSATRAIN_INJECT_CKPT_ENOSPC=2)
  how="MSATRAIN_INJECT_CKPT_ENOSPC"
fi
expect_fail "disk full during the second save ($how)" "No space left on device" \
  "${inject[@]}" "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=4 --set checkpoint.every=1 --set run.dir="$full/run"
out=$("${inject[@]}" "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=4 --set checkpoint.every=1 \
      --set run.dir="$full/run" --resume auto 2>&1) && fail "the second attempt should fail the same way"
grep -qF "cannot save checkpoint $full/run/checkpoints/step_00000002.h5" <<<"$out" || fail "$out"
grep -qF "the previous checkpoint $full/run/checkpoints/step_00000001.h5 is intact" <<<"$out" || fail "$out"
[[ $(cat "$full/run/checkpoints/latest") == "step_00000001.h5" ]] || fail "latest changed"
[[ -z "$(ls -A "$full/run/checkpoints" | grep '\.tmp\.' || true)" ]] || fail "a temporary file was left: $(ls -A "$full/run/checkpoints")"
"$BIN" ckpt inspect "$full/run/checkpoints/step_00000001.h5" >/dev/null || fail "the previous checkpoint does not load"
echo "ok: disk full ($how) -> clear error, step_00000001.h5 intact and loadable, no temporary file left"
