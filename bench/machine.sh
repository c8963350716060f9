#!/usr/bin/env bash
# Machine facts printed with every `make bench` run (issue 29): what makes
# one 2-core VM serve Berth's hot path at a third of another's speed. Prints
# Markdown list items.
set -u
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
mhz=$(awk -F': ' '/cpu MHz/ {printf "%.0f", $2; exit}' /proc/cpuinfo)
flags=$(awk -F': ' '/^flags/ {print $2; exit}' /proc/cpuinfo)
has() { grep -qw "$1" <<<"$flags" && echo yes || echo no; }
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null | grep -o '\[[a-z]*\]' | tr -d '[]')
kdamond=$(pgrep -c kdamond 2>/dev/null || echo 0)
vulns=$(grep -l -v -e '^Not affected' -e '^Mitigation: Enhanced' /sys/devices/system/cpu/vulnerabilities/* 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
# Steal time over one second: CPU the hypervisor gave to someone else.
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat; sleep 1
read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
total=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
steal=$(awk -v a="$((st2 - st1))" -v b="$total" 'BEGIN {printf "%.1f", b ? 100*a/b : 0}')
# A fixed single-threaded spin (awk arithmetic) and a page-fault loop
# (touching fresh memory), each timed: the two things Berth's fresh-instance
# path leans on (guest code and copy-on-write faults / TLB work).
t0=$(date +%s%N); awk 'BEGIN { for (i = 0; i < 20000000; i++) x += i }'; t1=$(date +%s%N)
spin_ms=$(( (t1 - t0) / 1000000 ))
t0=$(date +%s%N); python3 -c '
import mmap
for _ in range(20):
    m = mmap.mmap(-1, 64 << 20)
    for off in range(0, 64 << 20, 4096):
        m[off] = 1
    m.close()' 2>/dev/null; t1=$(date +%s%N)
fault_ms=$(( (t1 - t0) / 1000000 ))
# One byte at a time through dd: 2 M read/write system calls, the entry and
# exit cost that mitigations (and the hypervisor) set.
t0=$(date +%s%N); dd if=/dev/zero of=/dev/null bs=1 count=1000000 2>/dev/null; t1=$(date +%s%N)
syscall_ms=$(( (t1 - t0) / 1000000 ))
echo "- CPU: $(nproc) × $cpu at ${mhz} MHz; PCID $(has pcid), INVPCID $(has invpcid), PKU $(has pku)"
echo "- Kernel $(uname -r); transparent huge pages: ${thp:-unknown}; kdamond threads: $kdamond"
echo "- CPU vulnerabilities with costly mitigations: ${vulns:-none}"
echo "- Steal time over 1 s: ${steal} %; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Micro-benchmarks: 20 M awk additions ${spin_ms} ms (guest-code speed); 327,680 fresh 4 KiB page faults (Python loop included) ${fault_ms} ms (copy-on-write and TLB work); 2 M one-byte read/write system calls (dd) ${syscall_ms} ms (kernel entry and exit)"
