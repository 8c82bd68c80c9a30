#!/bin/bash
# One lease of a lent GPU machine (the `device` tool): probe the training throughput, train
# mdm-rt from a warm start until a deadline, run the gpu-marked tests beside it, then the GPU
# latency bench. What it produced comes back under $OUT (files at most 16 MiB: the checkpoint
# comes back slimmed). Stage 6 of the shipped mdm-rt was trained by this script (then an
# uncommitted .gpu/job.sh with the warm start named .gpu/init_v4.pt; otherwise the same).
#
# Prepared here, at no device time (the data and the start travel as the carried folder .gpu):
#   echo /.gpu/ >> .git/info/exclude
#   python -m facetrack.train.data.compact_data ../shared/data .gpu/data      # 40 MB, same split
#   python -c "from facetrack.train.models.checkpoint import slim_checkpoint as s; s('runs/mdm-rt-v4/best.pt', '.gpu/init.pt')"
# then device run: `bash scripts/gpu_train_lease.sh`, carry [".gpu"]. Variables: B (batch, 256),
# LR (1e-3), W (loader workers, 14 of the 16 cores), END (seconds after the start by which
# training stops, checkpointed by SIGTERM), PY (python3), DEV (cuda), INIT (the warm start:
# .gpu/init.pt when it exists, else the shipped facetrack/tracker/weights/mdm-rt.onnx, read back
# by facetrack/train/export/from_onnx.py; its split is the one this script trains with).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD CUBLAS_WORKSPACE_CONFIG=:4096:8 FACETRACK_DATA=$PWD/.gpu/data
exec > >(tee -a "$OUT/job.log") 2>&1
PY=${PY:-python3}; B=${B:-256}; LR=${LR:-1e-3}; W=${W:-14}; END=${END:-330}
[ -f .gpu/init.pt ] && INIT=${INIT:-.gpu/init.pt} || INIT=${INIT:-facetrack/tracker/weights/mdm-rt.onnx}
echo "== env at $(el)s"; nvidia-smi -L; nproc
$PY -c "import torch,cv2,numpy,onnxruntime;print('torch',torch.__version__,'cuda',torch.version.cuda,torch.cuda.is_available(),'cv2',cv2.__version__,'numpy',numpy.__version__,'ort',onnxruntime.__version__)"
COMMON="mdm-rt --data images68:4 pseudo_dlib:1 pseudo_v2:1 --data-root .gpu/data --batch $B --lr $LR --seed 0 --ema 0.999 --init-from $INIT --device ${DEV:-cuda} --quiet"
# the probe: steps/s from the validations at 80 and 240 (worker start-up left out)
$PY -m facetrack train $COMMON --out /tmp/probe --steps 240 --val-every 80 --workers $W || { echo "probe failed: without AMP"; COMMON="$COMMON --no-amp"; $PY -m facetrack train $COMMON --out /tmp/probe --force --steps 160 --val-every 80 --workers $W; }
cp /tmp/probe/metrics.jsonl "$OUT/probe_metrics.jsonl"
RATE=$($PY -c "
import json; h=[json.loads(l) for l in open('/tmp/probe/metrics.jsonl') if 'elapsed_s' in l]
print(round((h[-1]['step']-h[0]['step'])/(h[-1]['elapsed_s']-h[0]['elapsed_s']),2))")
[ -n "$RATE" ] || { echo "no training rate: stopping"; exit 3; }
# the run: 90 % of what the rate allows before END, less 25 s of start-up (the schedule must end)
STEPS=$($PY -c "print(int($RATE*($END-$(el)-25)*0.9)//100*100)"); VE=$($PY -c "print(max(100,$STEPS//12//50*50))")
echo "== rate $RATE steps/s at batch $B; main run $STEPS steps, val every $VE, from $(el)s"
nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw --format=csv -l 20 > "$OUT/gpu_util.csv" 2>&1 &
SMI=$!
timeout 150 $PY -m pytest -q -m gpu -rs -p no:cacheprovider tests/train/export/test_torch_cuda.py tests/engines/test_tensorrt.py > "$OUT/gpu_tests.txt" 2>&1 &
TP=$!
timeout -s TERM -k 20 $(( END - $(el) )) $PY -m facetrack train $COMMON --out /tmp/run --steps $STEPS --val-every $VE --workers $W
echo "== train rc $? at $(el)s"; kill $SMI
$PY -c "from facetrack.train.models.checkpoint import slim_checkpoint as s; s('/tmp/run/best.pt', '$OUT/best.pt')"
cp /tmp/run/metrics.jsonl /tmp/run/record.json "$OUT/"
wait $TP; echo "== tests done at $(el)s"; tail -5 "$OUT/gpu_tests.txt"
timeout 40 $PY -m facetrack.bench.gpu_latency --archs mdm-rt aan mdm --batches 1 8 --runs 200 --json "$OUT/gpu_latency.json"
echo "== end at $(el)s"
