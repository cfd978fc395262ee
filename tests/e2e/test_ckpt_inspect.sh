# `msatrain ckpt inspect`: step, layout, config summary and every tensor with shape and checksums; the file is
# plain HDF5 that h5py reads, with the same sums and CRC-32s.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
"$MPIRUN" 2 "$BIN" train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" \
  --set train.steps=3 --set eval.every=0 --set run.dir="$TMP/run" >/dev/null
file="$TMP/run/checkpoints/step_00000003.h5"
"$BIN" ckpt inspect "$file" >"$TMP/inspect.txt"
cat "$TMP/inspect.txt" | head -n 14

expect_line() { grep -qE -- "$1" "$TMP/inspect.txt" || fail "inspect output lacks /$1/"; }
expect_line "^checkpoint $file \([0-9.]+ MB\)$"
expect_line "^  format +msatrain-checkpoint v1, written by msatrain [0-9.]+ at 20[0-9-]+T[0-9:]+Z$"
expect_line "^  step +3 \(optimizer steps 3, skipped steps 0, 0 of them in a row\)$"
expect_line "^  consumed +48 samples, 3072 tokens$"
expect_line "^  data rng +seed 1234, next sample 48$"
expect_line "^  layout +dp=2 cp=1 ep=1 world=2$"
expect_line "^  model +gqa attention, d_model 64, n_layers 2, heads 4 \(kv 2\) x 16, ffn 96, vocab 256, seq_len 64"
expect_line "^  parameters +78208 values in 18 tensors; 54 tensors in all$"
expect_line "^  params/embed.weight +f32 \(256, 64\) +[-0-9.e+]+ [-0-9.e+]+ [0-9a-f]{8} ok$"
expect_line "^  optim/v/layers.1.ffn.w2 +f32 \(64, 96\) +[-0-9.e+]+ [-0-9.e+]+ [0-9a-f]{8} ok$"
[[ $(grep -cE '^  (params|optim/m|optim/v)/.* ok$' "$TMP/inspect.txt") == 54 ]] || fail "not 54 checked tensors"
echo "ok: inspect output"

if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
  /usr/bin/python3 - "$file" "$TMP/inspect.txt" <<'PY'
import h5py, numpy as np, sys, zlib
rows = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) >= 6 and parts[0].startswith(('params/', 'optim/')):
        rows[parts[0]] = (float(parts[-4]), float(parts[-3]), parts[-2])
with h5py.File(sys.argv[1], 'r') as f:
    assert f.attrs['format'] == 'msatrain-checkpoint' and f.attrs['step'] == 3, dict(f.attrs)
    assert f.attrs['layout.dp'] == 2 and f.attrs['samples_consumed'] == 48
    assert b'd_model: 64' in f['config'][()]
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n != 'config' else None)
    assert sorted(names) == sorted(rows), set(names) ^ set(rows)
    for n in names:
        a = f[n][()]
        s, ss, crc = rows[n]
        assert a.dtype == np.float32, (n, a.dtype)
        assert '%08x' % zlib.crc32(a.tobytes()) == crc == '%08x' % f[n].attrs['crc32'], n
        assert abs(a.astype(np.float64).sum() - s) <= 1e-6 * max(1.0, abs(s)), (n, s)
        assert abs((a.astype(np.float64) ** 2).sum() - ss) <= 1e-6 * max(1.0, ss), (n, ss)
    assert f['params/layers.0.attn.wqkv'].shape == (128, 64)
print(f'ok: h5py reads all {len(names)} tensors; sums and CRC-32s match inspect')
PY
else
  echo "skip: h5py check (python3-h5py not installed)"
fi

expect_fail "inspect of a missing file" "checkpoint $TMP/none.h5: no such file" "$BIN" ckpt inspect "$TMP/none.h5"
expect_fail "ckpt without a subcommand" "usage: msatrain ckpt inspect PATH" "$BIN" ckpt
grep -q "usage: msatrain ckpt inspect PATH" <<<"$("$BIN" ckpt --help)" || fail "no ckpt --help"
