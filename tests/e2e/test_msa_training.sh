# An MSA run goes through the indexer warmup into the sparse phase, logs the MSA metrics, and gives the same
# losses with 2 data-parallel ranks as with 1.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny_msa.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set model.seq_len=128
     --set train.batch_tokens=1024 --set train.micro_batch=2 --set attention.block_size=16
     --set attention.topk_blocks=3 --set attention.index_head_dim=16 --set attention.warmup_steps=3
     --set attention.recall_every=2 --set train.steps=6 --set eval.every=0 --set checkpoint.every=0)
"$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.dp=2 --set run.dir="$TMP/np2" >"$TMP/np2.log"
"$MPIRUN" 1 "$BIN" "${run[@]}" --set parallel.dp=1 --set run.dir="$TMP/np1" >"$TMP/np1.log"
python3 - "$TMP/np1/metrics.jsonl" "$TMP/np2/metrics.jsonl" <<'PY'
import json, sys
def train_lines(path):
    return [d for d in map(json.loads, open(path)) if 'val_loss' not in d]
one, two = train_lines(sys.argv[1]), train_lines(sys.argv[2])
assert [d['phase'] for d in one] == ['warmup'] * 3 + ['sparse'] * 3, [d['phase'] for d in one]
for d in one:
    assert d['kl_loss'] > 0 and 0 < d['selected_share'] <= 1, d
    assert d['loss'] > d['lm_loss'], 'loss = lm_loss + kl_coef * KL terms'
warm = [d for d in one if d['phase'] == 'warmup']
assert all(d['selected_share'] < 1 for d in one[3:]), 'sparse phase must be sparse at 128 tokens, 3 x 16 blocks'
assert [d['step'] for d in one if 'index_recall' in d] == [1, 3, 5, 6], [d['step'] for d in one if 'index_recall' in d]
for a, b in zip(one, two):
    for key in ('loss', 'lm_loss', 'kl_loss', 'grad_norm', 'index_grad_norm'):
        rel = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12)
        assert rel < 1e-5, (a['step'], key, a[key], b[key])
print('ok: phases', [d['phase'][0] for d in one], 'kl', [round(d['kl_loss'], 4) for d in one])
PY
