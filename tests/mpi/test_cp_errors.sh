# Context-parallel layouts that cannot cut the sequence are config errors naming the keys, on every rank, before
# any work: a seq_len that is not a multiple of 2 x cp, and (MSA) chunks that are not whole attention blocks.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=2
        --set parallel.dp=1 --set run.dir="$TMP/run")

expect_fail "seq_len 64 over cp=3" "model.seq_len (64) must be a multiple of 2 x parallel.cp = 6" \
  "$MPIRUN" 3 "$BIN" "${common[@]}" --set parallel.cp=3 --set train.batch_tokens=192
expect_fail "MSA chunks of half a block" \
  "model.seq_len (64) / (2 x parallel.cp = 8) = 8 tokens per context-parallel chunk, not a multiple of attention.block_size (16)" \
  "$MPIRUN" 4 "$BIN" "${common[@]}" --set parallel.cp=4 --set attention.type=msa --set attention.block_size=16 \
  --set attention.topk_blocks=2 --set attention.index_head_dim=16
# The same layout with dense attention is fine.
"$MPIRUN" 4 "$BIN" "${common[@]}" --set parallel.cp=4 --set attention.block_size=16 >/dev/null
echo "ok: dense attention at cp=4 with chunks of 8 tokens trains"
