# A fatal error on one rank ends every rank promptly (MPI_Abort), never a hang.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
MSATRAIN_INJECT_FAILURE=1:2 expect_fail "one rank fails" "injected failure on rank 1" \
  "$MPIRUN" 2 "$BIN" train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" \
  --set train.steps=50 --set run.dir="$TMP/run"
