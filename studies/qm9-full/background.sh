#!/usr/bin/env bash
# Train the study's missing models one at a time, in the background, from a git worktree at a fixed
# commit, and commit each finished model's record to the main checkout at once.
#
#   studies/qm9-full/background.sh WORKTREE CHECKOUT STAGE...    e.g. train@alpha-1 epochs_curve@24
#   studies/qm9-full/background.sh WORKTREE CHECKOUT              the stages of CHECKOUT's studies/qm9-full/queue
#
# The queue file lists the study's background work in order (one stage a line, # comments); stages already
# recorded are skipped, so the same command resumes the queue in every session.
# WORKTREE: `git worktree add --detach WORKTREE <commit>` of CHECKOUT, with the study's data built
# there (`dvc repro split` in WORKTREE/studies/qm9-full). The job runs WORKTREE's code (PYTHONPATH),
# so edits in CHECKOUT never reach a running model. Before each model, if CHECKOUT/../study.commit
# names another commit, WORKTREE moves to it (between models only). Each model is `dvc repro -s
# STAGE` (resumable: killed and rerun, it continues from scratch/checkpoints/); its outputs (as its
# dvc.lock entry lists them) and that entry are then copied to CHECKOUT and committed there alone.
# A stage already recorded in CHECKOUT's study dvc.lock is done and skipped (a train stage also
# needs a run.json that names a commit). After each model, `evaluate` rewrites the record (metrics/evaluate.json,
# plots/evaluate: mean ± sd over the folds that are in, the fold table folds.md that RECORD.md shows) and lands
# in the model's commit, so the committed lock always matches the committed results (after train_long@…:
# evaluate_long, metrics/evaluate_long.json). nice 19, one model at a time.
set -uo pipefail
WT=$(cd "$1" && pwd); MAIN=$(cd "$2" && pwd); shift 2
STUDY=studies/qm9-full
if [ $# -eq 0 ]; then  # no stage named: the queue
  [ -f "$MAIN/$STUDY/queue" ] || { echo "background: no stage given and no $MAIN/$STUDY/queue" >&2; exit 2; }
  mapfile -t queued < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$MAIN/$STUDY/queue")
  set -- "${queued[@]}"
fi
VENV=${QMLRP_VENV:-$MAIN/.venv}
export PATH=$VENV/bin:$PATH PYTHONPATH=$WT/src DVC_NO_ANALYTICS=1

commit_paths() {  # message, paths...: commit only these paths in MAIN (retries while git is busy)
  local message=$1; shift
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if git -C "$MAIN" add -- "$@" && git -C "$MAIN" commit -q -m "$message" -- "$@"; then return 0; fi
    sleep 20
  done
  echo "background: could not commit $*" >&2; return 1
}

merge_lock() {  # copy the lock entries of the given stages from WORKTREE's study lock into MAIN's
  python - "$WT/$STUDY/dvc.lock" "$MAIN/$STUDY/dvc.lock" "$@" <<'PY'
import sys, yaml
src, dst, stages = sys.argv[1], sys.argv[2], sys.argv[3:]
new = yaml.safe_load(open(src))
try:
    old = yaml.safe_load(open(dst)) or {}
except FileNotFoundError:
    old = {}
old.setdefault("schema", new.get("schema", "2.0"))
old.setdefault("stages", {})
for s in stages:
    old["stages"][s] = new["stages"][s]
old["stages"] = dict(sorted(old["stages"].items(), key=lambda kv: (kv[0].startswith("train@"), kv[0])))
yaml.safe_dump(old, open(dst, "w"), sort_keys=False)
PY
}

recorded() {  # is STAGE in MAIN's study lock?
  python - "$MAIN/$STUDY/dvc.lock" "$1" <<'PY'
import sys, yaml
try:
    stages = (yaml.safe_load(open(sys.argv[1])) or {}).get("stages", {})
except FileNotFoundError:
    stages = {}
sys.exit(0 if sys.argv[2] in stages else 1)
PY
}

outs_of() {  # the output paths of STAGE in WORKTREE's study lock, one per line
  python - "$WT/$STUDY/dvc.lock" "$1" <<'PY'
import sys, yaml
for out in yaml.safe_load(open(sys.argv[1]))["stages"][sys.argv[2]].get("outs", []):
    print(out["path"])
PY
}

for stage in "$@"; do
  if recorded "$stage"; then
    echo "background: $stage is done ($(date -u +%FT%TZ))"; continue
  fi
  if [ -f "$MAIN/../study.commit" ]; then
    want=$(cat "$MAIN/../study.commit")
    if [ "$(git -C "$WT" rev-parse HEAD)" != "$(git -C "$WT" rev-parse "$want")" ]; then
      git -C "$WT" checkout -q -f --detach "$want" && echo "background: worktree at $want"
    fi
  fi
  echo "background: $stage starts at $(git -C "$WT" rev-parse --short HEAD) ($(date -u +%FT%TZ))"
  if ! (cd "$WT/$STUDY" && nice -n 19 dvc repro -s "$stage"); then
    echo "background: $stage failed ($(date -u +%FT%TZ))" >&2; exit 1
  fi
  mapfile -t outs < <(outs_of "$stage")
  for out in "${outs[@]}"; do
    rm -rf "${MAIN:?}/$STUDY/$out"; mkdir -p "$(dirname "$MAIN/$STUDY/$out")"
    cp -r "$WT/$STUDY/$out" "$MAIN/$STUDY/$out"
  done
  merge_lock "$stage"
  record=$(for out in "${outs[@]}"; do find "$WT/$STUDY/$out" -name run.json 2>/dev/null; done | head -1)
  mae="recorded"  # a stage without a model (an evaluation) has no run.json
  if [ -n "$record" ]; then
    mae=$(python -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['target']} fold {r['fold']}: test MAE {r['test_mae']:.5g} {r['units']}, {r['epochs_run']} epochs, {r['process_cpu_seconds']/3600:.2f} CPU-h\")" "$record")
  fi
  evaluated=()
  case $stage in  # the record's evaluation follows each model, in the same commit
    train@*) evaluation=evaluate; runs=results ;;
    train_long@*) evaluation=evaluate_long; runs=results/long ;;
    *) evaluation= ;;
  esac
  if [ -n "$evaluation" ]; then
    for fold in "$MAIN/$STUDY/$runs"/*/fold*; do  # results committed after the worktree's commit
      rel=${fold#"$MAIN/$STUDY/"}
      [ -e "$WT/$STUDY/$rel" ] || { mkdir -p "$(dirname "$WT/$STUDY/$rel")"; cp -r "$fold" "$WT/$STUDY/$rel"; }
    done
    if (cd "$WT/$STUDY" && nice -n 19 dvc repro -s "$evaluation" >/dev/null); then
      mapfile -t evaluated < <(outs_of "$evaluation")
      for out in "${evaluated[@]}"; do
        rm -rf "${MAIN:?}/$STUDY/$out"; mkdir -p "$(dirname "$MAIN/$STUDY/$out")"; cp -r "$WT/$STUDY/$out" "$MAIN/$STUDY/$out"
      done
      merge_lock "$evaluation"
      # RECORD.md shows the fold table evaluate wrote (between its markers)
      [ "$evaluation" = evaluate ] && python -c "import sys; from pathlib import Path; from qmlrp.training.fold_table import with_table; \
r = Path(sys.argv[1]); r.write_text(with_table(r.read_text(), Path(sys.argv[2]).read_text()))" \
        "$MAIN/$STUDY/RECORD.md" "$MAIN/$STUDY/plots/evaluate/folds.md" && evaluated+=(RECORD.md)
    else
      echo "background: $evaluation failed after $stage; the model is committed without it" >&2
    fi
  fi
  commit_paths "full study: $stage done ($mae; dvc repro -s $stage)" "${outs[@]/#/$STUDY/}" "${evaluated[@]/#/$STUDY/}" "$STUDY/dvc.lock"
  echo "background: $stage committed: $mae ($(date -u +%FT%TZ))"
done
