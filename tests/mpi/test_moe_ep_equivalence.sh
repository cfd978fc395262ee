# Expert parallel: 5 steps of a tiny MoE model give the same losses, gradient norms and router metrics within
# 1e-5 relative on one rank and with ep = 2, 4 and dp x ep mixes (4 ranks with ep = 2, 2 ranks with ep = 1);
# then once more with sigmoid scores, a shared expert and a capacity factor that drops tokens, and with MSA
# attention.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
moe=(--set model.ffn=moe --set moe.n_experts=8 --set moe.top_k=2 --set moe.d_ff=32 --set moe.dense_layers=none
     --set moe.aux_loss_coef=0.01 --set moe.z_loss_coef=0.001)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" "${moe[@]}" --set data.dir="$data"
        --set train.steps=5 --set eval.every=0 --set checkpoint.every=0)

compare() {  # compare REFERENCE_DIR OTHER_DIR KEY...
  local ref="$1" other="$2"
  shift 2
  for key in "$@"; do
    paste <(metric "$ref/metrics.jsonl" $key) <(metric "$other/metrics.jsonl" $key) | python3 -c "
import sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
assert len(rows) == 5, f'expected 5 steps, got {len(rows)}'
worst = max(abs(a - b) / max(abs(a), 1e-12) for a, b in rows)
print(f'$(basename "$other") $key: largest relative difference {worst:.1e} over 5 steps')
assert worst < 1e-5, f'$key differs by {worst:.2e} relative'
"
  done
}

run() {  # run NP DP EP DIR extra...
  local np="$1" dp="$2" ep="$3" dir="$4"
  shift 4
  "$MPIRUN" "$np" "$BIN" "${common[@]}" --set parallel.dp="$dp" --set parallel.ep="$ep" --set run.dir="$TMP/$dir" \
    "$@" >"$TMP/$dir.log" || fail "$dir: $(tail -n 5 "$TMP/$dir.log")"
}

keys=(loss lm_loss grad_norm aux_loss z_loss)
run 1 1 1 np1_ep1
grep -q '"expert_load_max_over_mean": \[' "$TMP/np1_ep1/metrics.jsonl" || fail "no per-layer expert load in metrics"
for layout in "2 2 2" "4 4 4" "4 4 2" "2 2 1"; do
  read -r np dp ep <<<"$layout"
  run "$np" "$dp" "$ep" "np${np}_ep${ep}"
  compare "$TMP/np1_ep1" "$TMP/np${np}_ep${ep}" "${keys[@]}"
done

variant=(--set moe.score=sigmoid --set moe.renormalize=false --set moe.shared_experts=1 --set moe.capacity_factor=1.0)
run 1 1 1 var_np1 "${variant[@]}"
python3 -c "
import json
d = [json.loads(l) for l in open('$TMP/var_np1/metrics.jsonl') if 'val_loss' not in l]
assert all(x['dropped_token_share'] > 0 for x in d), [x['dropped_token_share'] for x in d]
print('capacity 1.0 drops', [round(x['dropped_token_share'], 3) for x in d])"
run 4 4 4 var_np4_ep4 "${variant[@]}"
compare "$TMP/var_np1" "$TMP/var_np4_ep4" "${keys[@]}" dropped_token_share
run 4 4 2 var_np4_ep2 "${variant[@]}"
compare "$TMP/var_np1" "$TMP/var_np4_ep2" "${keys[@]}" dropped_token_share

# MoE under MSA attention (warmup into the sparse phase): the KL terms and the router losses together.
common=(train --config "$SRC/configs/tiny_msa.yaml" "${TINY_SETS[@]}" "${moe[@]}" --set data.dir="$data"
        --set model.seq_len=128 --set train.batch_tokens=1024 --set train.micro_batch=2 --set attention.block_size=16
        --set attention.topk_blocks=3 --set attention.index_head_dim=16 --set attention.warmup_steps=2
        --set train.steps=5 --set eval.every=0 --set checkpoint.every=0)
run 1 1 1 msa_np1
run 2 2 2 msa_np2_ep2
compare "$TMP/msa_np1" "$TMP/msa_np2_ep2" "${keys[@]}" kl_loss index_grad_norm
