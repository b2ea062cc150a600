#!/usr/bin/env bash
# Rebuild, from an empty checkout, the best generator recipe on one of two corpora of the same zoo:
#   independent  every member from its own random init (configs/grids/independent.yaml, wide-tasks.yaml):
#                corpus/independent and corpus/wide; runs/v-tiny, v-S, v-S-bp, v-S-wide-la50 (the teacher,
#                docs/results.md items 28, 30, 40), then runs/xsp-k100-sSEED and xsp-k100-sSEED-lr1e-4-ts (the
#                student, items 56 and 63).
#   shared       one shared frame per family and dataset (configs/grids/default.yaml, wide-shared-parent.yaml):
#                corpus/default and corpus/wide-sp; the same runs with the prefix sp- (item 64).
#   arch-rich    shared, with corpus/arch-rich in corpus/wide-sp's place: the default grid's tasks at 49
#                architectures instead of 12 (configs/grids/arch-rich.yaml, item 66); the runs with the prefix ar-
#                (item 68). Its first three runs read corpus/default as shared's do, so copies of runs/sp-tiny,
#                sp-S and sp-S-bp named ar-* are skipped, not retrained.
# The variants differ in the corpora only. The wide corpus completes a copy of the small one (the small grid's members
# are all in the wide grid, so they are trained once). Each step is timed and skipped when its output exists; with
# DRY_RUN=1 the steps are printed, not run. About 35 minutes on 2 cores for the corpora and the teacher, and 20-35
# for each student (stop 32).
# Usage: benchmarks/rebuild_generator.sh independent|shared|arch-rich [SEED] [PRESET] [TEACHER_PRESET]
#   TEACHER_PRESET: the teacher's DiT preset (S, as every stop before 39 built it; S-E8, item 74, goes to
#   runs/<prefix>SE8, SE8-bp, SE8-wide-la50 and its students to runs/<prefix>SE8t-xsp...);
#   SEED: the student's distillation seed (3); PRESET: the student's DiT preset (XS, as every stop before 38 built it;
#   XS-E8, the best student of items 72-73, goes to runs/<prefix>xspE8-k100-sSEED)
# Environment: TEACHER_STEPS, the teacher's diffusion steps (500; 2,000 go to runs/<prefix>S<E>-d2000, item 75) and
#   TEACHER_TUNE_STEPS, its lookahead tune's steps (250; 500 go to <teacher>-wide-la50-t500, items 74-75); either
#   tags the students' names: runs/<prefix>SE8d2000t500-xspE8-k100-sSEED. A longer diffusion stage resumes from the
#   longest shorter one on disk (runs/sp-SE8 -> sp-SE8-d2000 -> sp-SE8-d5000, items 75-76). TARGET_STEPS, the fine-tune
#   steps behind each distillation target (100; 1,000 go to runs/<prefix>...-xspE8-k1000-sSEED, items 77 and 80), names the
#   student.
# The best recipe (items 75, 77, 80):
#   TEACHER_STEPS=2000 TEACHER_TUNE_STEPS=500 TARGET_STEPS=1000 benchmarks/rebuild_generator.sh shared 3 XS-E8 S-E8
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  independent) SMALL_GRID=independent; SMALL=corpus/independent; WIDE_GRID=wide-tasks; WIDE=corpus/wide; PREFIX="" ;;
  shared) SMALL_GRID=default; SMALL=corpus/default; WIDE_GRID=wide-shared-parent; WIDE=corpus/wide-sp; PREFIX=sp- ;;
  arch-rich) SMALL_GRID=default; SMALL=corpus/default; WIDE_GRID=arch-rich; WIDE=corpus/arch-rich; PREFIX=ar- ;;
  *) echo "usage: $0 independent|shared|arch-rich [SEED] [PRESET] [TEACHER_PRESET]" >&2; exit 2 ;;
esac
SEED=${2:-3}
PRESET=${3:-XS}
SUFFIX=${PRESET#XS}; SUFFIX=${SUFFIX#-}   # XS → '', XS-E8 → E8
TEACHER_PRESET=${4:-S}
TSUFFIX=${TEACHER_PRESET#S}; TSUFFIX=${TSUFFIX#-}   # S → '', S-E8 → E8
UNTAGGED_STEPS=500 UNTAGGED_TUNE_STEPS=250   # every stop before 40 used these: their runs' names carry no tag
TEACHER_STEPS=${TEACHER_STEPS:-$UNTAGGED_STEPS}
TEACHER_TUNE_STEPS=${TEACHER_TUNE_STEPS:-$UNTAGGED_TUNE_STEPS}
TARGET_STEPS=${TARGET_STEPS:-100}   # always in the student's name (k100), so no untagged case
DTAG=""; [ "$TEACHER_STEPS" = "$UNTAGGED_STEPS" ] || DTAG=d$TEACHER_STEPS
TTAG=""; [ "$TEACHER_TUNE_STEPS" = "$UNTAGGED_TUNE_STEPS" ] || TTAG=$TEACHER_TUNE_STEPS
TEACHER=runs/${PREFIX:-v-}   # the independent teacher's runs were named v-*, its students plain xsp-*
TEACHER_TAG=$TSUFFIX$DTAG$TTAG   # empty for the dense teacher of every stop before 39: its students keep their names
STUDENT=runs/${PREFIX}${TEACHER_TAG:+S${TSUFFIX}${DTAG}t${TTAG}-}xsp${SUFFIX}-k$TARGET_STEPS-s$SEED
T=${TEACHER}S$TSUFFIX${DTAG:+-$DTAG}   # the teacher's runs: $T (diffusion), $T-bp, $LA (its lookahead tune)
LA=$T-wide-la50${TTAG:+-t$TTAG}
W=.venv/bin/weightgen
EXCLUDE=(--exclude-suite suites/default.yaml --exclude-suite suites/smoke.yaml)
if [ "$1" = arch-rich ]; then  # stop 24 checked the old architectures' neighbours against the holdout suites, not these
  EXCLUDE+=(--exclude-suite suites/holdout.yaml --exclude-suite suites/holdout2.yaml)
fi
t() { if [ "${DRY_RUN:-0}" = 1 ]; then echo "STEP: $*"; return; fi
  local s=$SECONDS; "$@"; echo "TIMING $((SECONDS-s)) s: $*"; }

[ -f $SMALL/.done ] || { t $W corpus build --grid configs/grids/$SMALL_GRID.yaml --out $SMALL --workers 2; t touch $SMALL/.done; }
if [ ! -f $WIDE/.done ]; then
  t rm -rf $WIDE; t cp -r $SMALL $WIDE; t rm -f $WIDE/.done
  t $W corpus build --grid configs/grids/$WIDE_GRID.yaml --out $WIDE --workers 2; t touch $WIDE/.done
fi
[ -d ${TEACHER}tiny/encoder ] || t .venv/bin/python benchmarks/generator_variants.py --corpus $SMALL --out ${TEACHER}tiny --preset tiny --max-len 256 --steps 4000 --processes 2 --samples 1
# The diffusion stage is done when its run says it trained $TEACHER_STEPS steps: a copy of a shorter run is not.
trained_steps() { grep -o '"steps": [0-9]*' "$1/dit/config.json" 2>/dev/null | grep -o '[0-9]*$' || echo 0; }
# A longer stage resumes from the longest shorter one of the same preset on disk (a constant LR: the same schedule), as
# items 75-76 built theirs (500 -> 2,000 -> 5,000 steps); with none, it starts from the tiny run's encoder.
shorter_teacher() { local best="" most=0 run n
  for run in ${TEACHER}S$TSUFFIX ${TEACHER}S$TSUFFIX-d*; do
    [[ $run =~ ^${TEACHER}S$TSUFFIX(-d[0-9]+)?$ && -f $run/dit/model.safetensors ]] || continue
    n=$(trained_steps $run); if [ "$n" -lt "$TEACHER_STEPS" ] && [ "$n" -gt "$most" ]; then best=$run most=$n; fi
  done; echo "$best"; }
if [ ! -f $T/dit/model.safetensors ] || [ "$(trained_steps $T)" != "$TEACHER_STEPS" ]; then
  if [ ! -d $T/dit/checkpoints ]; then   # an interrupted stage resumes from its own checkpoints
    FROM=$(shorter_teacher)
    t rm -rf $T
    if [ -n "$FROM" ]; then t cp -r $FROM $T; else t cp -r ${TEACHER}tiny $T; t rm -rf $T/dit; fi
  fi
  t $W dit train --run $T --corpus $SMALL --preset $TEACHER_PRESET --steps $TEACHER_STEPS --processes 2; fi
[ -f $T-bp/dit/model.safetensors ] || t $W dit tune --run $T --corpus $SMALL --out $T-bp --steps 2000 --bias-penalty 1 --processes 2
[ -f $LA/dit/model.safetensors ] || t $W dit tune --run $T-bp --corpus $WIDE --out $LA --steps $TEACHER_TUNE_STEPS --bias-penalty 1 --inner-steps 50 --processes 2
[ -f $STUDENT/dit/model.safetensors ] || t $W dit distill --teacher $LA --corpus $WIDE --preset $PRESET --steps 1500 --neighbours 4 "${EXCLUDE[@]}" --output patches --target-steps $TARGET_STEPS --seed $SEED --out $STUDENT
[ -f $STUDENT-lr1e-4-ts/dit/model.safetensors ] || t $W dit tune --run $STUDENT --out $STUDENT-lr1e-4-ts --corpus $WIDE --steps 250 --inner-steps 50 --bias-penalty 1 --neighbours 4 "${EXCLUDE[@]}" --lr 1e-4 --init-spectrum
echo REBUILD DONE
