#!/usr/bin/env bash
# scripts/ncu_summary.py (behind scripts/gpu-kernels.sh) on an Nsight Compute
# per-kernel CSV of the shape ncu writes: kernels ordered by total time, units
# converted, shares of the total; a CSV without the summary is an error.
source "$SRC/tests/sh_util.sh"

cat > ncu.csv <<'CSV'
==PROF== Connected to process 495 (bertrain)
bench: device cuda: NVIDIA H100 80GB HBM3 (GPU 0, sm_90, 132 SMs)
"Process ID","Process Name","Host Name","Kernel Name","Block Size","Grid Size","Device","CC","Invocations","Section Name","Metric Name","Metric Unit","Minimum","Maximum","Average"
"495","bertrain","127.0.0.1","small_kernel","(256, 1, 1)","(3, 1, 1)","0","9.0","10","Command line profiler metrics","gpu__time_duration.sum","ns","900.00","1,100.00","1,000.00"
"495","bertrain","127.0.0.1","big_kernel","(128, 1, 1)","(1280, 1, 1)","0","9.0","2","Command line profiler metrics","gpu__time_duration.sum","us","40.00","60.00","50.00"
"495","bertrain","127.0.0.1","once_kernel","(256, 1, 1)","(1, 1, 1)","0","9.0","1","Command line profiler metrics","gpu__time_duration.sum","ms","0.02","0.02","0.02"
CSV
out=$("$PYTHON" "$SRC/scripts/ncu_summary.py" ncu.csv)
echo "$out"
# totals: big 0.100 ms, once 0.020 ms, small 0.010 ms; 0.130 ms in 13 launches
first=$(echo "$out" | sed -n 3p) second=$(echo "$out" | sed -n 4p) third=$(echo "$out" | sed -n 5p)
echo "$out" | grep -q "^0.130 ms of kernels in 13 launches" && pass || fail "the total: $out"
[[ $first == *big_kernel* && $first == *76.9%* && $first == *50.0* ]] && pass || fail "first row: $first"
[[ $second == *once_kernel* && $second == *20.0* ]] && pass || fail "second row: $second"
[[ $third == *small_kernel* && $third == *" 10 "* && $third == *1.1* ]] && pass || fail "third row: $third"
echo "not a summary" > empty.csv
expect_fail "a CSV without a summary" "has no per-kernel summary" "$PYTHON" "$SRC/scripts/ncu_summary.py" empty.csv
finish
