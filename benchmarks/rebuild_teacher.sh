#!/usr/bin/env bash
# Rebuild, from an empty checkout, the corpus and the K = 50 teacher that every generator since stop 12 starts
# from (docs/results.md items 28, 30, 40): corpus/default, corpus/wide, runs/v-tiny (encoder), runs/v-S (diffusion
# DiT), runs/v-S-bp (plain tune), runs/v-S-wide-la50 (lookahead tune). Each step is timed and skipped when its
# output exists. About 80 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
W=.venv/bin/weightgen
t() { local s=$SECONDS; "$@"; echo "TIMING $((SECONDS-s)) s: $*"; }
[ -f corpus/default/manifest.parquet ] || t $W corpus build --grid configs/grids/default.yaml --out corpus/default --workers 2
if [ ! -f corpus/wide/.done ]; then rm -rf corpus/wide; cp -r corpus/default corpus/wide
  t $W corpus build --grid configs/grids/wide-tasks.yaml --out corpus/wide --workers 2; touch corpus/wide/.done; fi
[ -d runs/v-tiny/encoder ] || t .venv/bin/python benchmarks/generator_variants.py --out runs/v-tiny --preset tiny --max-len 256 --steps 4000 --processes 2 --samples 1
if [ ! -f runs/v-S/dit/model.safetensors ]; then rm -rf runs/v-S; cp -r runs/v-tiny runs/v-S; rm -rf runs/v-S/dit
  t $W dit train --run runs/v-S --corpus corpus/default --preset S --steps 500 --processes 2; fi
[ -f runs/v-S-bp/dit/model.safetensors ] || t $W dit tune --run runs/v-S --corpus corpus/default --out runs/v-S-bp --steps 2000 --bias-penalty 1 --processes 2
[ -f runs/v-S-wide-la50/dit/model.safetensors ] || t $W dit tune --run runs/v-S-bp --corpus corpus/wide --out runs/v-S-wide-la50 --steps 250 --bias-penalty 1 --inner-steps 50 --processes 2
echo REBUILD DONE
