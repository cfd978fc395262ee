# Missing or corrupt token shards stop the run with a message naming the file, on every rank, without a hang.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set run.dir="$TMP/run" --set train.steps=2)

expect_fail "missing data folder" "$TMP/none" "$MPIRUN" 2 "$BIN" "${run[@]}" --set data.dir="$TMP/none"
cp -r "$data" "$TMP/truncated"
truncate -s -7 "$TMP/truncated/val_000.bin"
expect_fail "truncated shard" "val_000.bin" "$MPIRUN" 2 "$BIN" "${run[@]}" --set data.dir="$TMP/truncated"
cp -r "$data" "$TMP/corrupt"
printf 'XXXXXXXX' | dd of="$TMP/corrupt/train_000.bin" conv=notrunc status=none
expect_fail "corrupt shard header" "train_000.bin" "$MPIRUN" 2 "$BIN" "${run[@]}" --set data.dir="$TMP/corrupt"
