# Context parallel at model level, in double precision: tests/mpi/cp_model_test.cpp on 2 and 4 ranks (the
# split model against one unsplit model on every rank; a rank whose tokens carry no loss stays finite).
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
tests="${MSATRAIN_MPI_CP_TESTS:?run through ctest}"
for np in 2 4; do
  "$MPIRUN" $np "$tests" || fail "cp model tests on $np ranks"
  echo "ok: cp model tests on $np ranks"
done
