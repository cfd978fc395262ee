# Preemption: SIGTERM, SIGINT or SIGUSR1 finishes the current step, saves a checkpoint, prints a message and
# exits 0; --resume auto then continues from that step.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set eval.every=0
     --set checkpoint.every=0 --set train.decay=constant)

# Starts a long run in the background on NP ranks into DIR; sets $launcher once a few steps are logged.
start_long_run() {  # start_long_run NP DIR
  "$MPIRUN" "$1" "$BIN" "${run[@]}" --set train.steps=100000 --set run.dir="$2" --set parallel.dp="$1" \
    >"$2.log" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do
    [[ -f "$2/metrics.jsonl" && $(wc -l <"$2/metrics.jsonl") -ge 3 ]] && return 0
    sleep 0.1
  done
  kill -9 "$launcher"
  fail "the run did not start: $(cat "$2.log")"
}

# check_stopped DIR SIGNAL: the run stopped with a message, exit 0, and a checkpoint of its last step.
check_stopped() {
  local dir="$1" sig="$2" rc=0
  wait "$launcher" || rc=$?
  [[ $rc -eq 0 ]] || fail "exit code $rc after $sig: $(tail -n 5 "$dir.log")"
  local msg
  msg=$(grep "msatrain: stopped by $sig after step" "$dir.log") || fail "no stop message: $(tail -n 5 "$dir.log")"
  stopped=$(sed -E 's/.*after step ([0-9]+) of.*/\1/' <<<"$msg")
  local file
  file=$(printf 'step_%08d.h5' "$stopped")
  [[ $(cat "$dir/checkpoints/latest") == "$file" ]] || fail "latest is not $file"
  [[ $(metric "$dir/metrics.jsonl" step | tail -n 1) == "$stopped" ]] || fail "metrics do not end at step $stopped"
  ! grep -q "msatrain: done" "$dir.log" || fail "a stopped run must not say done"
  echo "ok: $sig -> $msg"
}

# SIGTERM to every rank (what Slurm and Kubernetes do)
start_long_run 2 "$TMP/term"
kill -TERM $(ps -o pid= --ppid "$launcher")
check_stopped "$TMP/term" SIGTERM
"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=$((stopped + 3)) --set run.dir="$TMP/term" --resume auto \
  >"$TMP/term.resume.log"
grep -q "resuming from .*at step $stopped " "$TMP/term.resume.log" || fail "$(head -n 3 "$TMP/term.resume.log")"
[[ "$(metric "$TMP/term/metrics.jsonl" step | tr '\n' ' ')" == "$(seq -s ' ' 1 $((stopped + 3))) " ]] ||
  fail "steps after the resume: $(metric "$TMP/term/metrics.jsonl" step | tr '\n' ' ')"
echo "ok: resumed after SIGTERM and ran steps $((stopped + 1))..$((stopped + 3))"

# SIGINT (Ctrl-C) on a single rank
start_long_run 1 "$TMP/int"
kill -INT $(ps -o pid= --ppid "$launcher")
check_stopped "$TMP/int" SIGINT

# SIGUSR1 to mpirun, which forwards it to every rank (mpirun follows a forwarded SIGTERM with SIGKILL after
# Open MPI's odls_base_sigkill_timeout, 1 s by default; SIGUSR1 waits for the ranks).
start_long_run 2 "$TMP/launcher"
kill -USR1 "$launcher"
check_stopped "$TMP/launcher" SIGUSR1
