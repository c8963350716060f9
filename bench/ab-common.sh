# What bench/ab.sh and bench/ab-pairs.sh share beyond bench/lib.sh (sourced,
# not run): their two binaries. Expects AB_NAME (the script's name in
# messages).

: "${BASE:?BASE=path of the base berth binary}"
: "${HEAD:?HEAD=path of the head berth binary}"
BENCH_NAME=$AB_NAME
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
