#!/bin/bash
# usage: benches/deployments/idle-cpu.sh PORT DIR N  -> creates N waiting deployments, then CPU seconds used over 20 s idle
port=$1; dir=$2; n=$3
rm -rf $dir && mkdir $dir
(BOOTLOADER_DATA_DIR=$dir BOOTLOADER_HTTP_LISTEN=127.0.0.1:$port RUST_LOG=warn nohup ./target/debug/bootloader serve > $dir/out.log 2>&1 &)
sleep 4
T=$(cat $dir/admin-token)
python3 benches/deployments/create.py http://127.0.0.1:$port $T $n
pid=$(pgrep -f "BOOTLOADER_HTTP_LISTEN=127.0.0.1:$port" || pgrep -f "bootloader serve" | head -1)
sleep 5
tick=$(getconf CLK_TCK)
a=$(awk '{print $14+$15}' /proc/$pid/stat)
sleep 20
b=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "CPU over 20 s idle with $n waiting deployments: $(echo "scale=2; ($b-$a)/$tick" | bc) s; RSS $(ps -o rss= -p $pid) kB"
kill $pid
