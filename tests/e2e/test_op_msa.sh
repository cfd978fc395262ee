# `msatrain op msa` from the command line: help, exit codes and messages for bad input, and, where a Python
# with numpy and h5py is installed, the external NumPy reference (tools/msa_reference.py) against the binary.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"

"$BIN" op msa --help | grep -qF "docs/op_msa.md" || fail "op msa --help does not point at docs/op_msa.md"
"$BIN" --help | grep -qF "op     msa" || fail "msatrain --help does not list op msa"

expect_fail "missing input file" "$TMP/nope.h5' does not exist" "$BIN" op msa --in "$TMP/nope.h5" --out "$TMP/o.h5"
expect_fail "no --out" "needs --in IN.h5 and --out OUT.h5" "$BIN" op msa --in "$TMP/nope.h5"
expect_fail "unknown operator" "unknown operator 'mla'" "$BIN" op mla
echo "not hdf5" >"$TMP/text.h5"
rc=0
"$BIN" op msa --in "$TMP/text.h5" --out "$TMP/o.h5" 2>"$TMP/err" || rc=$?
[[ $rc -eq 2 ]] || fail "bad input must exit 2, got $rc: $(cat "$TMP/err")"
grep -qF "is not an HDF5 file" "$TMP/err" || fail "unexpected message: $(cat "$TMP/err")"
[[ ! -e "$TMP/o.h5" ]] || fail "a rejected input wrote an output file"

# The NumPy reference needs numpy and h5py; the first Python that has both runs it.
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import numpy, h5py' 2>/dev/null; then py="$cand"; break; fi
done
if [[ -z "$py" ]]; then
  echo "skip: no python3 with numpy and h5py; tools/msa_reference.py not run"
  exit 0
fi
"$py" "$SRC/tools/msa_reference.py" --bin "$BIN" --keep "$TMP/reference" || fail "tools/msa_reference.py failed"
echo "ok: tools/msa_reference.py agrees with msatrain op msa"
