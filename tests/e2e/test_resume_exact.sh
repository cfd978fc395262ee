# Exact resume on CPU: a run that crashes and is resumed with --resume auto gives, step for step, the same
# metrics as the run that was never interrupted, and ends in a bit-identical state (same tensor CRC-32s).
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=12
     --set eval.every=4 --set checkpoint.every=3 --set checkpoint.keep=0)

"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/straight" >"$TMP/straight.log"

# Rank 0 dies in step 8: the checkpoint of step 6 exists, metrics.jsonl already holds step 7.
MSATRAIN_INJECT_FAILURE=0:7 expect_fail "crash in step 8" "injected failure on rank 0 at step 8" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/resumed"
[[ $(metric "$TMP/resumed/metrics.jsonl" step | tail -n 1) == 7 ]] || fail "metrics should end at step 7 after the crash"
"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/resumed" --resume auto >"$TMP/resumed.log"
grep -qF "resuming from $TMP/resumed/checkpoints/step_00000006.h5 at step 6" "$TMP/resumed.log" ||
  fail "did not resume from step 6: $(head -n 3 "$TMP/resumed.log")"
grep -q "msatrain: done" "$TMP/resumed.log" || fail "the resumed run did not finish"

python3 - "$TMP/straight/metrics.jsonl" "$TMP/resumed/metrics.jsonl" <<'PY'
import json, sys
def lines(path):
    out = []
    for l in open(path):
        d = json.loads(l)
        for k in ('tokens_per_s', 'elapsed_s'):  # timings differ between runs
            d.pop(k, None)
        out.append(d)
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
train = [d['step'] for d in b if 'val_loss' not in d]
assert train == list(range(1, 13)), f'steps not once each: {train}'
assert [d['step'] for d in b if 'val_loss' in d] == [4, 8, 12], b
for x, y in zip(a, b):
    assert x == y, f'differs:\n  straight {x}\n  resumed  {y}'
assert len(a) == len(b)
print('ok: metrics.jsonl identical to the uninterrupted run (', len(a), 'lines, last loss', a[-2]['loss'], ')')
PY

# Bit-identical state: every tensor of the checkpoints written after the resume has the same CRC-32.
for step in 00000009 00000012; do
  tensors() { "$BIN" ckpt inspect "$1" | grep -E '^  (params|optim)/'; }
  diff <(tensors "$TMP/straight/checkpoints/step_$step.h5") <(tensors "$TMP/resumed/checkpoints/step_$step.h5") ||
    fail "step $step: tensors differ from the uninterrupted run"
done
echo "ok: params and AdamW moments bit-identical at steps 9 and 12"

# Resuming a finished run trains nothing and leaves metrics.jsonl alone.
before=$(md5sum <"$TMP/resumed/metrics.jsonl")
"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/resumed" --resume auto >"$TMP/again.log"
grep -q "nothing left to train" "$TMP/again.log" || fail "no 'nothing left to train' message: $(cat "$TMP/again.log")"
[[ $(md5sum <"$TMP/resumed/metrics.jsonl") == "$before" ]] || fail "metrics.jsonl changed"
echo "ok: resuming a finished run is a no-op"

# --resume auto in a fresh run folder starts fresh.
"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/fresh" --set train.steps=2 --resume auto >"$TMP/fresh.log"
grep -q "no checkpoint in $TMP/fresh/checkpoints; starting fresh" "$TMP/fresh.log" || fail "$(cat "$TMP/fresh.log")"
echo "ok: --resume auto without checkpoints starts fresh"

# MSA: a crash inside the indexer warmup, resumed, crosses into the sparse phase exactly like the straight run.
msa=(train --config "$SRC/configs/tiny_msa.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set model.seq_len=128
     --set train.batch_tokens=1024 --set train.micro_batch=2 --set attention.block_size=16 --set attention.topk_blocks=3
     --set attention.index_head_dim=16 --set attention.warmup_steps=3 --set attention.recall_every=2
     --set train.steps=6 --set eval.every=0 --set checkpoint.every=2)
"$MPIRUN" 2 "$BIN" "${msa[@]}" --set run.dir="$TMP/msa_straight" >/dev/null
MSATRAIN_INJECT_FAILURE=1:2 expect_fail "MSA crash in step 3 (warmup)" "injected failure" \
  "$MPIRUN" 2 "$BIN" "${msa[@]}" --set run.dir="$TMP/msa_resumed"
"$MPIRUN" 2 "$BIN" "${msa[@]}" --set run.dir="$TMP/msa_resumed" --resume auto >/dev/null
python3 - "$TMP/msa_straight/metrics.jsonl" "$TMP/msa_resumed/metrics.jsonl" <<'PY'
import json, sys
def lines(path):
    out = [json.loads(l) for l in open(path)]
    for d in out:
        d.pop('tokens_per_s', None), d.pop('elapsed_s', None)
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
assert a == b, f'\n{a}\n{b}'
assert [d['phase'] for d in b if 'phase' in d] == ['warmup'] * 3 + ['sparse'] * 3
print('ok: MSA resume from step 2: phases, kl_loss and index_recall identical to the straight run')
PY
